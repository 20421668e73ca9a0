package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	bolt "go.etcd.io/bbolt"
)

// mth is RFC 6962's Merkle Tree Hash, straight from its definition: the
// reference the stored tree is checked against.
func mth(entries [][]byte) []byte {
	switch n := len(entries); n {
	case 0:
		s := sha256.Sum256(nil)
		return s[:]
	case 1:
		return Hasher.HashLeaf(entries[0])
	default:
		k := 1
		for k*2 < n {
			k *= 2
		}
		return Hasher.HashChildren(mth(entries[:k]), mth(entries[k:]))
	}
}

func openLog(t *testing.T, path string) *Log {
	t.Helper()
	l, err := Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func entry(i int) []byte { return fmt.Appendf(nil, `{"seq":%d,"event":"test"}`, i) }

// t0 is the time of the test entries.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// appendEntries appends entries, stamped t0 and unlabelled, as one batch
// after the log's last Raft index and returns the new size.
func appendEntries(t testing.TB, l *Log, entries [][]byte) uint64 {
	t.Helper()
	leaves := make([]Leaf, len(entries))
	for i, e := range entries {
		leaves[i] = Leaf{Data: e, Time: t0}
	}
	size, err := l.AppendBatches([]Batch{{LogIndex: l.LastIndex() + 1, Leaves: leaves}})
	require.NoError(t, err)
	return size
}

// fill appends n entries in random batches to a log holding prior and
// returns all its entries.
func fill(t *testing.T, l *Log, rng *rand.Rand, prior [][]byte, n int) [][]byte {
	t.Helper()
	all := append([][]byte(nil), prior...)
	for want := len(prior) + n; len(all) < want; {
		batch := make([][]byte, 0, 16)
		for range min(1+rng.IntN(16), want-len(all)) {
			batch = append(batch, entry(len(all)+len(batch)))
		}
		size := appendEntries(t, l, batch)
		all = append(all, batch...)
		require.EqualValues(t, len(all), size)
		require.Equal(t, mth(all), l.Root(), "root after %d entries", len(all))
	}
	return all
}

func TestProofsForRandomSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l := openLog(t, filepath.Join(t.TempDir(), "audit.db"))
	require.Equal(t, mth(nil), l.Root(), "the empty tree")
	all := fill(t, l, rng, nil, 300)
	for range 400 {
		size := 1 + rng.Uint64N(uint64(len(all)))
		index := rng.Uint64N(size)
		root, err := l.RootAt(size)
		require.NoError(t, err)
		require.Equal(t, mth(all[:size]), root, "root at %d", size)
		p, err := l.InclusionProof(index, size)
		require.NoError(t, err)
		require.NoError(t, VerifyInclusion(all[index], index, size, p, root), "inclusion of %d in %d", index, size)

		size1 := rng.Uint64N(size + 1)
		root1, err := l.RootAt(size1)
		require.NoError(t, err)
		c, err := l.ConsistencyProof(size1, size)
		require.NoError(t, err)
		if size1 > 0 {
			require.NoError(t, VerifyConsistency(size1, size, c, root1, root), "consistency %d -> %d", size1, size)
		}
	}
	_, err := l.InclusionProof(0, l.Size()+1)
	require.ErrorIs(t, err, ErrNotFound)
}

// A modified, removed or reordered entry fails verification.
func TestR8TamperingFailsProofs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := openLog(t, filepath.Join(t.TempDir(), "audit.db"))
	all := fill(t, l, rng, nil, 100)
	size, root := l.Size(), l.Root()
	p, err := l.InclusionProof(41, size)
	require.NoError(t, err)
	require.NoError(t, VerifyInclusion(all[41], 41, size, p, root))

	modified := bytes.Clone(all[41])
	modified[len(modified)-2] ^= 1
	require.Error(t, VerifyInclusion(modified, 41, size, p, root), "modified entry")
	require.Error(t, VerifyInclusion(all[42], 41, size, p, root), "reordered: entry 42 shown at 41")

	// A history without entry 41 (or with 41 and 42 swapped) has another
	// root: no consistency proof links the signed head to it.
	removed := append(append([][]byte{}, all[:41]...), all[42:]...)
	require.NotEqual(t, root, mth(removed))
	swapped := append([][]byte{}, all...)
	swapped[41], swapped[42] = swapped[42], swapped[41]
	require.NotEqual(t, root, mth(swapped))
	other := openLog(t, filepath.Join(t.TempDir(), "other.db"))
	appendEntries(t, other, removed)
	c, err := other.ConsistencyProof(40, other.Size())
	require.NoError(t, err)
	root40, err := l.RootAt(40)
	require.NoError(t, err)
	require.Error(t, VerifyConsistency(40, size, c, root40, root), "the shortened history is not an extension of the signed one")
}

func TestReopenKeepsTheTree(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path)
	require.NoError(t, err)
	all := fill(t, l, rng, nil, 77)
	root := l.Root()
	require.NoError(t, l.Close())

	l = openLog(t, path)
	require.EqualValues(t, 77, l.Size())
	require.Equal(t, root, l.Root())
	require.NoError(t, l.Verify())
	all = fill(t, l, rng, all, 23)
	require.Equal(t, mth(all), l.Root())
	got, err := l.Entry(76)
	require.NoError(t, err)
	require.Equal(t, all[76], got)
}

// A log edited on disk is caught: its entries no longer hash to its tree,
// and its tree head no longer matches the one signed before.
func TestR8TamperedOnDiskIsDetected(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path)
	require.NoError(t, err)
	fill(t, l, rng, nil, 50)
	_, key, _ := ed25519.GenerateKey(nil)
	s, vkey, err := attestation.NewCheckpointSigner("trustfed.test/audit", key)
	require.NoError(t, err)
	signed, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: "trustfed.test/audit", Size: l.Size(), Root: l.Root()}, s)
	require.NoError(t, err)
	require.NoError(t, l.Close())

	rewriteEntry(t, path, 17, func(lf *Leaf) { lf.Data = []byte(`{"seq":17,"event":"rewritten"}`) })

	l = openLog(t, path)
	require.Error(t, l.Verify(), "entries no longer hash to the stored tree")
	cp, err := attestation.OpenCheckpoint(signed, "trustfed.test/audit", vkey)
	require.NoError(t, err)
	e17, err := l.Entry(17)
	require.NoError(t, err)
	p, err := l.InclusionProof(17, cp.Size)
	require.NoError(t, err)
	require.Error(t, VerifyInclusion(e17, 17, cp.Size, p, cp.Root), "the rewritten entry is not in the signed tree")
}

// Hashes of subtrees under 16 leaves are not stored (they are computed from
// the entries when a proof needs them), yet every proof of a reopened log
// verifies.
func TestLeafHashesAreComputed(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path)
	require.NoError(t, err)
	all := fill(t, l, rng, nil, 37)
	require.NoError(t, l.Close())

	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	var nodes int
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketNodes).ForEach(func(k, _ []byte) error {
			require.GreaterOrEqual(t, k[0], byte(minStoredLevel), "a small subtree's hash was stored (node key %x)", k)
			nodes++
			return nil
		})
	}))
	require.NoError(t, db.Close())
	require.Equal(t, 37/16+37/32, nodes, "one stored node per complete subtree of 16 or more leaves")

	l = openLog(t, path)
	require.Equal(t, mth(all), l.Root())
	for _, i := range []uint64{0, 17, 36} {
		p, err := l.InclusionProof(i, 37)
		require.NoError(t, err)
		require.NoError(t, VerifyInclusion(all[i], i, 37, p, l.Root()), "entry %d", i)
	}
}
