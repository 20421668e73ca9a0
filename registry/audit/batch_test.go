package audit

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// labelSet is the labels of the test entries: "org:a" is a prefix of
// "org:ab", and "mode:HIPAA" is rare.
var labelSet = []string{"org:a", "org:ab", "org:b", "type:DECISION", "type:GRANT", "mode:HIPAA"}

// randomLeaf is leaf seq with a few random labels and a time at or after
// prev.
func randomLeaf(rng *rand.Rand, seq int, prev time.Time) Leaf {
	var labels []string
	for _, s := range labelSet {
		p := 3
		if s == "mode:HIPAA" {
			p = 40
		}
		if rng.IntN(p) == 0 {
			labels = append(labels, s)
		}
	}
	rng.Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
	step := time.Duration(rng.IntN(3)) * time.Second // often equal times
	return Leaf{Data: entry(seq), Time: prev.Add(step), Labels: labels}
}

// randomBatches returns n batches after Raft index after and entry seq
// seq, some empty, with Raft indexes that skip now and then.
func randomBatches(rng *rand.Rand, n int, after uint64, seq int, prev time.Time) []Batch {
	out := make([]Batch, n)
	index := after
	for i := range out {
		index += 1 + uint64(rng.IntN(2))
		out[i].LogIndex = index
		for range rng.IntN(5) {
			lf := randomLeaf(rng, seq, prev)
			out[i].Leaves = append(out[i].Leaves, lf)
			prev, seq = lf.Time, seq+1
		}
	}
	return out
}

func leavesOf(batches []Batch) []Leaf {
	var out []Leaf
	for _, b := range batches {
		out = append(out, b.Leaves...)
	}
	return out
}

func dataOf(leaves []Leaf) [][]byte {
	out := make([][]byte, len(leaves))
	for i, lf := range leaves {
		out[i] = lf.Data
	}
	return out
}

// filledLog is a log of n random entries, and its entries.
func filledLog(t *testing.T, rng *rand.Rand, path string, n int) (*Log, []Leaf) {
	t.Helper()
	l := openLog(t, path)
	var all []Leaf
	for len(all) < n {
		prev := t0
		if len(all) > 0 {
			prev = all[len(all)-1].Time
		}
		batches := randomBatches(rng, 1+rng.IntN(40), l.LastIndex(), len(all), prev)
		_, err := l.AppendBatches(batches)
		require.NoError(t, err)
		all = append(all, leavesOf(batches)...)
	}
	require.EqualValues(t, len(all), l.Size())
	return l, all
}

// requireLeaf checks got against want (labels are stored in their order,
// times in UTC).
func requireLeaf(t *testing.T, want, got Leaf) {
	t.Helper()
	require.Equal(t, want.Data, got.Data)
	require.True(t, want.Time.Equal(got.Time), "time %s, want %s", got.Time, want.Time)
	require.Equal(t, len(want.Labels), len(got.Labels))
	if len(want.Labels) > 0 {
		require.Equal(t, want.Labels, got.Labels)
	}
}

func TestAppendBatchesIsIdempotent(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := Open(path)
	require.NoError(t, err)
	require.Zero(t, l.LastIndex())
	batches := randomBatches(rng, 60, 0, 0, t0)
	batches = append(batches, Batch{LogIndex: batches[len(batches)-1].LogIndex + 5}) // no leaves
	all := leavesOf(batches)

	// An apply batch, then one overlapping it, as after a crash before
	// the state machine recorded its progress.
	_, err = l.AppendBatches(batches[:30])
	require.NoError(t, err)
	require.Equal(t, batches[29].LogIndex, l.LastIndex())
	size, err := l.AppendBatches(batches[20:])
	require.NoError(t, err)
	require.EqualValues(t, len(all), size)
	require.Equal(t, batches[len(batches)-1].LogIndex, l.LastIndex(), "the last index even with no leaves")
	require.Equal(t, mth(dataOf(all)), l.Root())
	root, lastIndex := l.Root(), l.LastIndex()
	require.NoError(t, l.Close())

	before, err := os.ReadFile(path)
	require.NoError(t, err)
	l = openLog(t, path)
	require.Equal(t, lastIndex, l.LastIndex(), "the last index survives a reopen")
	for _, again := range [][]Batch{batches, batches[:1], batches[len(batches)-1:], nil} {
		size, err = l.AppendBatches(again)
		require.NoError(t, err)
		require.EqualValues(t, len(all), size)
	}
	require.Equal(t, root, l.Root())
	require.Equal(t, lastIndex, l.LastIndex())
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing was written")
	require.NoError(t, l.Verify())

	// Old batches followed by new ones: only the new ones are appended.
	more := randomBatches(rng, 10, lastIndex, len(all), all[len(all)-1].Time)
	size, err = l.AppendBatches(append(slices.Clone(batches[50:]), more...))
	require.NoError(t, err)
	all = append(all, leavesOf(more)...)
	require.EqualValues(t, len(all), size)
	require.Equal(t, mth(dataOf(all)), l.Root())
	for i, want := range all {
		got, err := l.Leaf(uint64(i))
		require.NoError(t, err)
		requireLeaf(t, want, got)
	}
	_, err = l.Leaf(uint64(len(all)))
	require.ErrorIs(t, err, ErrNotFound)
}

func TestAppendBatchesRefusesBadInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l := openLog(t, path)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	leaf := func(sec int, labels ...string) Leaf { return Leaf{Data: entry(sec), Time: at(sec), Labels: labels} }
	_, err := l.AppendBatches([]Batch{{LogIndex: 10, Leaves: []Leaf{leaf(5, "org:a"), leaf(7, "org:a")}}})
	require.NoError(t, err)

	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name    string
		batches []Batch
	}{
		{"decreasing Raft index", []Batch{{LogIndex: 12, Leaves: []Leaf{leaf(8)}}, {LogIndex: 11}}},
		{"repeated Raft index", []Batch{{LogIndex: 12, Leaves: []Leaf{leaf(8)}}, {LogIndex: 12}}},
		{"skipped then decreasing", []Batch{{LogIndex: 9}, {LogIndex: 8}, {LogIndex: 11}}},
		{"time before the last entry", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(6)}}}},
		{"time going back in a batch", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(9), leaf(8)}}}},
		{"time going back across batches", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(9)}}, {LogIndex: 12, Leaves: []Leaf{leaf(8)}}}},
		{"empty label", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(8, "org:b", "")}}}},
		{"label of 256 bytes", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(8, long)}}}},
		{"repeated label", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(8, "org:b", "type:X", "org:b")}}}},
		{"bad leaf after a good batch", []Batch{{LogIndex: 11, Leaves: []Leaf{leaf(8, "org:b")}}, {LogIndex: 12, Leaves: []Leaf{leaf(9, "")}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			_, err = l.AppendBatches(tc.batches)
			require.ErrorIs(t, err, ErrInvalid)
			require.EqualValues(t, 2, l.Size())
			require.EqualValues(t, 10, l.LastIndex())
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, before, after, "nothing was written")
		})
	}
	require.NoError(t, l.Close())

	// The last entry's time is checked after a reopen too.
	l = openLog(t, path)
	_, err = l.AppendBatches([]Batch{{LogIndex: 11, Leaves: []Leaf{leaf(6)}}})
	require.ErrorIs(t, err, ErrInvalid)
	size, err := l.AppendBatches([]Batch{{LogIndex: 11, Leaves: []Leaf{leaf(7, strings.Repeat("x", 255)), leaf(7)}}})
	require.NoError(t, err, "equal times and a 255-byte label are fine")
	require.EqualValues(t, 4, size)
	require.NoError(t, l.Verify())
}

// bruteScan is what Scan must visit: the seqs in [from, to) carrying label.
func bruteScan(all []Leaf, label string, from, to uint64) []uint64 {
	var out []uint64
	for seq := from; seq < to; seq++ {
		if label == "" || slices.Contains(all[seq].Labels, label) {
			out = append(out, seq)
		}
	}
	return out
}

func TestScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	l, all := filledLog(t, rng, filepath.Join(t.TempDir(), "audit.db"), 3000)
	size := l.Size()
	labels := append([]string{"", "org:none", "org"}, labelSet...)

	for range 300 {
		label := labels[rng.IntN(len(labels))]
		from := rng.Uint64N(size + 1)
		to := from + rng.Uint64N(size-from+1)
		budget := rng.IntN(50) - 5 // some unlimited
		want := bruteScan(all, label, from, to)

		// Page through with the budget.
		var got []uint64
		for at, calls := from, 0; at != to; calls++ {
			require.Less(t, calls, len(want)+2, "Scan makes progress")
			visited := 0
			next, err := l.Scan(label, at, to, budget, func(seq uint64, lf Leaf) (bool, error) {
				requireLeaf(t, all[seq], lf)
				got = append(got, seq)
				visited++
				return true, nil
			})
			require.NoError(t, err)
			if budget > 0 {
				require.LessOrEqual(t, visited, budget)
			}
			if next != to {
				require.Equal(t, budget, visited, "stops early only for the budget")
				require.Contains(t, want, next, "resumes at a matching entry")
			}
			require.Greater(t, next, at)
			at = next
		}
		require.Equal(t, want, got, "label %q [%d, %d) budget %d", label, from, to, budget)

		// Stop after k entries: resume is the next match.
		if len(want) > 0 {
			k := 1 + rng.IntN(len(want))
			n := 0
			next, err := l.Scan(label, from, to, 0, func(uint64, Leaf) (bool, error) {
				n++
				return n < k, nil
			})
			require.NoError(t, err)
			require.Equal(t, k, n)
			if k < len(want) {
				require.Equal(t, want[k], next)
			} else {
				require.Equal(t, to, next)
			}
		}
	}

	_, err := l.Scan("org:a", 0, size+1, 0, nil)
	require.ErrorIs(t, err, ErrNotFound)
	_, err = l.Scan("org:a", 5, 4, 0, nil)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = l.Scan(strings.Repeat("x", 256), 0, size, 0, nil)
	require.ErrorIs(t, err, ErrInvalid)
	boom := errors.New("boom")
	for _, label := range []string{"", "org:a"} {
		want := bruteScan(all, label, 100, size)
		next, err := l.Scan(label, 100, size, 0, func(seq uint64, _ Leaf) (bool, error) {
			if seq == want[3] {
				return false, boom
			}
			return true, nil
		})
		require.ErrorIs(t, err, boom)
		require.Equal(t, want[3], next, "resume at the failing entry")
	}
}

func TestSeqAtTime(t *testing.T) {
	l := openLog(t, filepath.Join(t.TempDir(), "audit.db"))
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	seq, err := l.SeqAtTime(at(0))
	require.NoError(t, err)
	require.Zero(t, seq, "empty log")

	// Times 10, 10, 10, 12, 13, 13, 20, ... : runs of equal times and gaps.
	rng := rand.New(rand.NewPCG(15, 16))
	var times []int
	var batches []Batch
	for sec, i := 10, 0; i < 500; i++ {
		if rng.IntN(3) == 0 {
			sec += 1 + rng.IntN(4)
		}
		times = append(times, sec)
		batches = append(batches, Batch{LogIndex: uint64(i + 1), Leaves: []Leaf{{Data: entry(i), Time: at(sec)}}})
	}
	_, err = l.AppendBatches(batches)
	require.NoError(t, err)

	for sec := 0; sec <= times[len(times)-1]+3; sec++ {
		for _, q := range []time.Time{at(sec), at(sec).Add(-time.Nanosecond), at(sec).Add(time.Nanosecond)} {
			want, _ := slices.BinarySearchFunc(times, q, func(s int, q time.Time) int { return at(s).Compare(q) })
			got, err := l.SeqAtTime(q)
			require.NoError(t, err)
			require.EqualValues(t, want, got, "time %s", q)
		}
	}
	seq, err = l.SeqAtTime(at(times[0]))
	require.NoError(t, err)
	require.Zero(t, seq, "the first entry's time")
	seq, err = l.SeqAtTime(at(times[len(times)-1]))
	require.NoError(t, err)
	require.Equal(t, uint64(slices.Index(times, times[len(times)-1])), seq, "the first of the last run")
	seq, err = l.SeqAtTime(at(times[len(times)-1] + 1))
	require.NoError(t, err)
	require.Equal(t, l.Size(), seq, "after the last entry")
	seq, err = l.SeqAtTime(time.Time{})
	require.NoError(t, err)
	require.Zero(t, seq, "before the first entry")
}

func TestRange(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	l, all := filledLog(t, rng, filepath.Join(t.TempDir(), "audit.db"), 700)
	size := l.Size()
	for range 50 {
		from := rng.Uint64N(size + 1)
		to := from + rng.Uint64N(size-from+1)
		want := from
		require.NoError(t, l.Range(from, to, func(seq uint64, lf Leaf) error {
			require.Equal(t, want, seq)
			requireLeaf(t, all[seq], lf)
			want++
			return nil
		}))
		require.Equal(t, to, want)
	}
	boom := errors.New("boom")
	n := 0
	err := l.Range(0, size, func(uint64, Leaf) error {
		if n++; n == 10 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	require.Equal(t, 10, n)
	require.ErrorIs(t, l.Range(0, size+1, nil), ErrNotFound)
	require.ErrorIs(t, l.Range(3, 2, nil), ErrInvalid)
	require.NoError(t, l.Range(size, size, nil))
}
