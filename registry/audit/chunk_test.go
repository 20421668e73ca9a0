package audit

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
)

// rewriteEntry changes entry seq of the closed log at path in place: its
// chunk is decoded, fn edits the entry, and the chunk is encoded again.
func rewriteEntry(t *testing.T, path string, seq uint64, fn func(lf *Leaf)) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, db.Close()) }()
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		er := newEntryReader(tx)
		if _, _, err := er.record(seq); err != nil {
			return err
		}
		ch := er.ch
		leaves := make([]Leaf, ch.n)
		for i := range leaves {
			lf, err := er.leaf(ch.first + uint64(i))
			if err != nil {
				return err
			}
			lf.Data = bytes.Clone(lf.Data)
			leaves[i] = lf
		}
		fn(&leaves[seq-ch.first])
		return tx.Bucket(bucketEntries).Put(seqKey(ch.first), encodeChunk(leaves))
	}))
}

// chunkLayout is the (first entry, entry count) of every chunk of l.
func chunkLayout(t *testing.T, l *Log) [][2]uint64 {
	t.Helper()
	var out [][2]uint64
	require.NoError(t, l.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			ch, err := parseChunk(binary.BigEndian.Uint64(k), v)
			out = append(out, [2]uint64{ch.first, ch.n})
			return err
		})
	}))
	return out
}

// chunkValues copies every stored chunk of l, by first entry.
func chunkValues(t *testing.T, l *Log) map[uint64][]byte {
	t.Helper()
	out := map[uint64][]byte{}
	require.NoError(t, l.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			out[binary.BigEndian.Uint64(k)] = bytes.Clone(v)
			return nil
		})
	}))
	return out
}

// Entries appended in calls of sizes around the chunk size are stored as
// new chunks of at most chunkMaxEntries per call, never rewriting one, and
// read back exactly at and around every chunk boundary, also after a
// reopen.
func TestChunkBoundaries(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path)
	require.NoError(t, err)

	calls := []int{1, 255, 256, 257, 600, 2 * chunkMaxEntries}
	for range 150 {
		calls = append(calls, 1+rng.IntN(3))
	}
	calls = append(calls, chunkMaxEntries+1, 1)
	var all []Leaf
	var want [][2]uint64 // the chunk layout
	for _, n := range calls {
		before := chunkValues(t, l)
		// The call's leaves, spread over a few Raft entries; times
		// strictly increase, so that SeqAtTime finds each entry.
		var batches []Batch
		for i := 0; i < n; {
			k := min(n-i, 1+rng.IntN(n))
			b := Batch{LogIndex: l.LastIndex() + uint64(len(batches)) + 1}
			for range k {
				seq := len(all)
				lf := randomLeaf(rng, seq, t0)
				lf.Time = t0.Add(time.Duration(seq) * time.Millisecond)
				b.Leaves = append(b.Leaves, lf)
				all = append(all, lf)
			}
			batches = append(batches, b)
			i += k
		}
		for first, end := uint64(len(all)-n), uint64(len(all)); first < end; first += chunkMaxEntries {
			want = append(want, [2]uint64{first, min(chunkMaxEntries, end-first)})
		}
		size, err := l.AppendBatches(batches)
		require.NoError(t, err)
		require.EqualValues(t, len(all), size)
		after := chunkValues(t, l)
		for first, v := range before {
			require.Equal(t, v, after[first], "chunk at %d was rewritten", first)
		}
	}
	require.Equal(t, want, chunkLayout(t, l))

	// The entries at and around each chunk boundary.
	size := uint64(len(all))
	var around []uint64
	for _, c := range want {
		for _, seq := range []uint64{c[0] - 1, c[0], c[0] + 1, c[0] + c[1] - 1} {
			if seq < size && !slices.Contains(around, seq) { // c[0]-1 wraps for the first chunk
				around = append(around, seq)
			}
		}
	}
	datas := dataOf(all)
	roots := map[uint64][]byte{}
	rootOfFirst := func(n uint64) []byte {
		if roots[n] == nil {
			roots[n] = mth(datas[:n])
		}
		return roots[n]
	}
	check := func(t *testing.T, l *Log) {
		require.Equal(t, size, l.Size())
		require.Equal(t, mth(datas), l.Root())
		require.NoError(t, l.Verify())
		require.NoError(t, l.VerifyPrefix(t.Context(), size))
		next := uint64(0)
		require.NoError(t, l.Range(0, size, func(seq uint64, lf Leaf) error {
			require.Equal(t, next, seq)
			requireLeaf(t, all[seq], lf)
			next++
			return nil
		}))
		require.Equal(t, size, next)
		for _, label := range labelSet {
			var got []uint64
			_, err := l.Scan(label, 0, size, 0, func(seq uint64, lf Leaf) (bool, error) {
				requireLeaf(t, all[seq], lf)
				got = append(got, seq)
				return true, nil
			})
			require.NoError(t, err)
			require.Equal(t, bruteScan(all, label, 0, size), got, "label %q", label)
		}
		for _, seq := range around {
			lf, err := l.Leaf(seq)
			require.NoError(t, err)
			requireLeaf(t, all[seq], lf)
			e, err := l.Entry(seq)
			require.NoError(t, err)
			require.Equal(t, all[seq].Data, e)
			at, err := l.SeqAtTime(all[seq].Time)
			require.NoError(t, err)
			require.Equal(t, seq, at, "SeqAtTime of entry %d's time", seq)
			at, err = l.SeqAtTime(all[seq].Time.Add(time.Nanosecond))
			require.NoError(t, err)
			require.Equal(t, seq+1, at, "SeqAtTime just after entry %d", seq)

			// A range and scans across the boundary.
			from, to := seq-min(seq, 2), min(size, seq+3)
			next := from
			require.NoError(t, l.Range(from, to, func(s uint64, lf Leaf) error {
				require.Equal(t, next, s)
				requireLeaf(t, all[s], lf)
				next++
				return nil
			}))
			require.Equal(t, to, next)
			var got []uint64
			for at := from; at != to; {
				at, err = l.Scan("", at, to, 1, func(s uint64, lf Leaf) (bool, error) {
					requireLeaf(t, all[s], lf)
					got = append(got, s)
					return true, nil
				})
				require.NoError(t, err)
			}
			require.Equal(t, bruteScan(all, "", from, to), got)
			var entries []uint64
			require.NoError(t, l.Entries(from, func(s uint64, e []byte) bool {
				require.Equal(t, all[s].Data, e)
				entries = append(entries, s)
				return s+1 < to
			}))
			require.Equal(t, bruteScan(all, "", from, to), entries)

			// Proofs of the entry, and of the trees ending around it.
			for _, sz := range []uint64{seq + 1, size} {
				root, err := l.RootAt(sz)
				require.NoError(t, err)
				require.Equal(t, rootOfFirst(sz), root, "root at %d", sz)
				p, err := l.InclusionProof(seq, sz)
				require.NoError(t, err)
				require.NoError(t, VerifyInclusion(all[seq].Data, seq, sz, p, root), "inclusion of %d in %d", seq, sz)
			}
			root1, err := l.RootAt(seq + 1)
			require.NoError(t, err)
			c, err := l.ConsistencyProof(seq+1, size)
			require.NoError(t, err)
			require.NoError(t, VerifyConsistency(seq+1, size, c, root1, l.Root()), "consistency %d -> %d", seq+1, size)
		}
		_, err := l.Leaf(size)
		require.ErrorIs(t, err, ErrNotFound)
	}
	check(t, l)
	require.NoError(t, l.Close())
	l = openLog(t, path)
	check(t, l)
	require.Equal(t, want, chunkLayout(t, l))
}

// A large entry closes its chunk: no chunk grows much past chunkMaxBytes.
func TestChunkByteLimit(t *testing.T) {
	l := openLog(t, filepath.Join(t.TempDir(), "audit.db"))
	big := bytes.Repeat([]byte("x"), chunkMaxBytes/4) // three to a chunk
	var leaves []Leaf
	var datas [][]byte
	for i := range 10 {
		d := append(bytes.Clone(big), byte(i))
		if i == 5 {
			d = bytes.Repeat([]byte("y"), chunkMaxBytes+1) // on its own
		}
		leaves = append(leaves, Leaf{Data: d, Time: t0})
		datas = append(datas, d)
	}
	_, err := l.AppendBatches([]Batch{{LogIndex: 1, Leaves: leaves}})
	require.NoError(t, err)
	require.Equal(t, [][2]uint64{{0, 3}, {3, 2}, {5, 1}, {6, 3}, {9, 1}}, chunkLayout(t, l))
	require.Equal(t, mth(datas), l.Root())
	require.NoError(t, l.Verify())
	for i, d := range datas {
		e, err := l.Entry(uint64(i))
		require.NoError(t, err)
		require.Equal(t, d, e)
	}
}

// writeOldLog writes a log of n entries in the layout before format 2: one
// leaf per key in entries, times and labels in attrs, no format marker.
func writeOldLog(t *testing.T, path string, n int) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := map[string]*bolt.Bucket{}
		for _, name := range []string{"entries", "nodes", "attrs", "labels", "meta"} {
			var err error
			if b[name], err = tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		for i := range n {
			if err := b["entries"].Put(seqKey(uint64(i)), entry(i)); err != nil {
				return err
			}
			if err := b["attrs"].Put(seqKey(uint64(i)), appendAttrs(nil, t0, []string{"org:a"})); err != nil {
				return err
			}
		}
		if err := b["meta"].Put(keySize, seqKey(uint64(n))); err != nil {
			return err
		}
		return b["meta"].Put(keyLastIndex, seqKey(uint64(n)))
	}))
	require.NoError(t, db.Close())
}

// A file in an older layout is refused with ErrFormat (the server moves
// it aside and rebuilds the log); one holding no entries is upgraded.
func TestOldFormatIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "old.db")
	writeOldLog(t, path, 20)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	_, err = Open(path)
	require.ErrorIs(t, err, ErrFormat)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "the refused file is not written")

	// An unknown format marker.
	path = filepath.Join(dir, "future.db")
	l := openLog(t, path)
	appendEntries(t, l, [][]byte{entry(0)})
	require.NoError(t, l.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, seqKey(format+1))
	}))
	require.NoError(t, db.Close())
	_, err = Open(path)
	require.ErrorIs(t, err, ErrFormat)

	// An old file without entries: nothing to lose, it is upgraded.
	path = filepath.Join(dir, "empty.db")
	writeOldLog(t, path, 0)
	l = openLog(t, path)
	require.Zero(t, l.Size())
	require.NoError(t, l.view(func(tx *bolt.Tx) error {
		require.Nil(t, tx.Bucket(bucketAttrs), "the old attrs bucket is dropped")
		require.Equal(t, seqKey(format), tx.Bucket(bucketMeta).Get(keyFormat))
		return nil
	}))
	all := fill(t, l, rand.New(rand.NewPCG(25, 26)), nil, 40)
	require.NoError(t, l.Close())
	l = openLog(t, path)
	require.Equal(t, mth(all), l.Root())
	require.NoError(t, l.Verify())
}

// A garbled chunk (a header promising more than its bytes, offsets out of
// order, no header at all) makes every read of its entries fail with an
// error, never a panic; entries of other chunks still read.
func TestCorruptChunk(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, tc := range []struct {
		name   string
		garble func(v []byte) []byte
		first  uint64 // an entry of the chunk still readable (or none: ^0)
	}{
		{"truncated records", func(v []byte) []byte { return v[:len(v)-40] }, 0},
		{"truncated header", func(v []byte) []byte { return v[:chunkCountLen+chunkEndsLen*10] }, ^uint64(0)},
		{"one byte", func(v []byte) []byte { return v[:1] }, ^uint64(0)},
		{"empty", func(v []byte) []byte { return nil }, ^uint64(0)},
		{"no entries", func(v []byte) []byte { binary.BigEndian.PutUint16(v, 0); return v }, ^uint64(0)},
		{"more entries than the header holds", func(v []byte) []byte { binary.BigEndian.PutUint16(v, 0xffff); return v }, ^uint64(0)},
		{"offsets going back", func(v []byte) []byte {
			// Entry 5's record ends before its attributes do.
			binary.BigEndian.PutUint32(v[chunkCountLen+chunkEndsLen*5+4:], 3)
			return v
		}, 0},
		{"offsets past the end", func(v []byte) []byte {
			binary.BigEndian.PutUint32(v[chunkCountLen+chunkEndsLen*7+4:], 1<<31)
			return v
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			l := openLog(t, path)
			var all []Leaf
			// Three chunks of 20 entries: [0, 20), [20, 40), [40, 60).
			for range 3 {
				batches := randomBatches(rng, 1, l.LastIndex(), len(all), t0)
				for len(batches[0].Leaves) < 20 {
					batches[0].Leaves = append(batches[0].Leaves, randomLeaf(rng, len(all)+len(batches[0].Leaves), t0))
				}
				batches[0].Leaves = batches[0].Leaves[:20]
				for i := range batches[0].Leaves {
					batches[0].Leaves[i].Time = t0
				}
				_, err := l.AppendBatches(batches)
				require.NoError(t, err)
				all = append(all, batches[0].Leaves...)
			}
			require.Equal(t, [][2]uint64{{0, 20}, {20, 20}, {40, 20}}, chunkLayout(t, l))
			require.NoError(t, l.Close())

			db, err := bolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketEntries)
				return b.Put(seqKey(20), tc.garble(bytes.Clone(b.Get(seqKey(20)))))
			}))
			require.NoError(t, db.Close())

			l = openLog(t, path) // the last entry is intact
			bad := 0
			for seq := uint64(20); seq < 40; seq++ {
				lf, err := l.Leaf(seq)
				if seq == 20+tc.first {
					require.NoError(t, err, "entry %d", seq)
					requireLeaf(t, all[seq], lf)
					continue
				}
				if err != nil {
					require.ErrorIs(t, err, errCorrupt, "entry %d", seq)
					bad++
				}
			}
			require.Positive(t, bad, "some entries of the chunk are unreadable")
			for _, seq := range []uint64{19, 40} {
				lf, err := l.Leaf(seq)
				require.NoError(t, err)
				requireLeaf(t, all[seq], lf)
			}
			require.ErrorIs(t, l.Verify(), errCorrupt)
			require.ErrorIs(t, l.VerifyPrefix(t.Context(), 60), errCorrupt)
			require.ErrorIs(t, l.Range(0, 60, func(uint64, Leaf) error { return nil }), errCorrupt)
			_, err = l.Scan("", 0, 60, 0, func(uint64, Leaf) (bool, error) { return true, nil })
			require.ErrorIs(t, err, errCorrupt)
			require.ErrorIs(t, l.Entries(0, func(uint64, []byte) bool { return true }), errCorrupt)
			// The root of 24 entries hashes the subtree of entries [16, 24)
			// from the entries, [20, 24) among them.
			_, err = l.RootAt(24)
			if tc.first != 0 {
				require.ErrorIs(t, err, errCorrupt)
			}
			for _, seq := range []uint64{0, 59} {
				_, err := l.InclusionProof(seq, 60)
				require.NoError(t, err, "proofs away from the chunk need none of its entries")
			}
		})
	}
}

// Opening a log whose last chunk is garbled fails (it reads the last
// entry's time) with an error rather than a panic.
func TestCorruptLastChunkFailsOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLog(t, path)
	appendEntries(t, l, [][]byte{entry(0), entry(1), entry(2)})
	require.NoError(t, l.Close())
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		return b.Put(seqKey(0), b.Get(seqKey(0))[:chunkCountLen+chunkEndsLen*3+5])
	}))
	require.NoError(t, db.Close())
	_, err = Open(path)
	require.ErrorIs(t, err, errCorrupt)
}

// Verify counts the entries across chunks: a stray chunk after the last
// entry, or one overlapping another, is caught even though every entry of
// the tree reads and hashes right.
func TestVerifyCountsChunkEntries(t *testing.T) {
	for _, tc := range []struct {
		name      string
		first     uint64
		openFails bool // the last entry no longer reads
	}{{"after the last entry", 40, false}, {"overlapping", 10, false}, {"hiding the last entry", 35, true}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.db")
			l := openLog(t, path)
			var all [][]byte
			for range 2 {
				batch := make([][]byte, 20)
				for i := range batch {
					batch[i] = entry(len(all) + i)
				}
				appendEntries(t, l, batch)
				all = append(all, batch...)
			}
			require.NoError(t, l.Verify())
			require.NoError(t, l.Close())
			db, err := bolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketEntries).Put(seqKey(tc.first), encodeChunk([]Leaf{{Data: entry(99), Time: t0}}))
			}))
			require.NoError(t, db.Close())
			if tc.openFails {
				_, err := Open(path)
				require.ErrorIs(t, err, errCorrupt)
				return
			}
			l = openLog(t, path)
			require.ErrorIs(t, l.Verify(), errCorrupt)
		})
	}
}
