package audit

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

// leafIter yields leaves, reusing one buffer for their bytes like a
// snapshot reader would.
func leafIter(leaves []Leaf) func() (Leaf, bool, error) {
	var buf []byte
	i := 0
	return func() (Leaf, bool, error) {
		if i == len(leaves) {
			return Leaf{}, false, nil
		}
		lf := leaves[i]
		i++
		buf = append(buf[:0], lf.Data...)
		lf.Data = buf
		return lf, true, nil
	}
}

// requireSameLog checks that got holds the same tree and entries as want.
func requireSameLog(t *testing.T, rng *rand.Rand, want, got *Log) {
	t.Helper()
	size := want.Size()
	require.Equal(t, size, got.Size())
	require.Equal(t, want.Root(), got.Root())
	require.Equal(t, want.LastIndex(), got.LastIndex())
	for range 100 {
		s := 1 + rng.Uint64N(size)
		i, s1 := rng.Uint64N(s), rng.Uint64N(s+1)
		p1, err := want.InclusionProof(i, s)
		require.NoError(t, err)
		p2, err := got.InclusionProof(i, s)
		require.NoError(t, err)
		require.Equal(t, p1, p2)
		c1, err := want.ConsistencyProof(s1, s)
		require.NoError(t, err)
		c2, err := got.ConsistencyProof(s1, s)
		require.NoError(t, err)
		require.Equal(t, c1, c2)
	}
	require.NoError(t, want.Range(0, size, func(seq uint64, lf Leaf) error {
		g, err := got.Leaf(seq)
		require.NoError(t, err)
		requireLeaf(t, lf, g)
		return nil
	}))
	for _, label := range labelSet {
		var s1, s2 []uint64
		_, err := want.Scan(label, 0, size, 0, func(seq uint64, _ Leaf) (bool, error) { s1 = append(s1, seq); return true, nil })
		require.NoError(t, err)
		_, err = got.Scan(label, 0, size, 0, func(seq uint64, _ Leaf) (bool, error) { s2 = append(s2, seq); return true, nil })
		require.NoError(t, err)
		require.Equal(t, s1, s2, "label %q", label)
	}
	require.NoError(t, got.Verify())
}

func TestReplace(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	dir := t.TempDir()
	src, all := filledLog(t, rng, filepath.Join(dir, "src.db"), 3*replaceTxLeaves/2) // two transactions
	path := filepath.Join(dir, "dst.db")
	dst, _ := filledLog(t, rng, path, 50)
	oldSize, oldRoot, oldIndex := dst.Size(), dst.Root(), dst.LastIndex()
	oldLeaf, err := dst.Leaf(7)
	require.NoError(t, err)
	requireUntouched := func(t *testing.T) {
		t.Helper()
		require.Equal(t, oldSize, dst.Size())
		require.Equal(t, oldRoot, dst.Root())
		require.Equal(t, oldIndex, dst.LastIndex())
		lf, err := dst.Leaf(7)
		require.NoError(t, err)
		requireLeaf(t, oldLeaf, lf)
		require.NoError(t, dst.Verify())
		_, err = os.Stat(replacePath(path))
		require.ErrorIs(t, err, os.ErrNotExist, "the half-built log is removed")
	}

	t.Run("wrong root", func(t *testing.T) {
		err := dst.Replace(src.LastIndex(), bytes.Repeat([]byte{1}, 32), leafIter(all))
		require.ErrorIs(t, err, ErrRootMismatch)
		requireUntouched(t)
	})
	t.Run("failing source", func(t *testing.T) {
		boom := errors.New("boom")
		next := leafIter(all)
		n := 0
		err := dst.Replace(src.LastIndex(), nil, func() (Leaf, bool, error) {
			if n++; n == replaceTxLeaves+10 {
				return Leaf{}, false, boom
			}
			return next()
		})
		require.ErrorIs(t, err, boom)
		requireUntouched(t)
	})
	t.Run("time going back", func(t *testing.T) {
		bad := append(append([]Leaf(nil), all[:100]...), Leaf{Data: entry(100), Time: all[99].Time.Add(-time.Second)})
		require.ErrorIs(t, dst.Replace(9, nil, leafIter(bad)), ErrInvalid)
		requireUntouched(t)
	})
	t.Run("untouched log still appends", func(t *testing.T) {
		before := dst.Size()
		_, err := dst.AppendBatches([]Batch{{LogIndex: dst.LastIndex() + 1, Leaves: []Leaf{{Data: entry(1000), Time: time.Now()}}}})
		require.NoError(t, err)
		require.Equal(t, before+1, dst.Size())
		oldSize, oldRoot, oldIndex = dst.Size(), dst.Root(), dst.LastIndex()
	})

	require.NoError(t, dst.Replace(src.LastIndex(), src.Root(), leafIter(all)))
	require.Equal(t, path, dst.Path())
	requireSameLog(t, rng, src, dst)
	_, err = os.Stat(replacePath(path))
	require.ErrorIs(t, err, os.ErrNotExist)

	// Both logs go on alike, and the replaced one survives a reopen.
	more := randomBatches(rng, 20, src.LastIndex(), len(all), all[len(all)-1].Time)
	for _, l := range []*Log{src, dst} {
		_, err := l.AppendBatches(more)
		require.NoError(t, err)
	}
	requireSameLog(t, rng, src, dst)
	require.NoError(t, dst.Close())
	dst = openLog(t, path)
	requireSameLog(t, rng, src, dst)

	// Open removes what a crash in Replace left behind.
	require.NoError(t, dst.Close())
	require.NoError(t, os.WriteFile(replacePath(path), []byte("half-built"), 0o600))
	dst = openLog(t, path)
	_, err = os.Stat(replacePath(path))
	require.ErrorIs(t, err, os.ErrNotExist)

	// Replacing with nothing empties the log.
	require.NoError(t, dst.Replace(3, Hasher.EmptyRoot(), leafIter(nil)))
	require.Zero(t, dst.Size())
	require.EqualValues(t, 3, dst.LastIndex())
	require.Equal(t, Hasher.EmptyRoot(), dst.Root())
	require.NoError(t, dst.Verify())
}

// Readers running during Replace see the old log or the new one, whole.
func TestReplaceWithConcurrentReaders(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	dir := t.TempDir()
	src, all := filledLog(t, rng, filepath.Join(dir, "src.db"), 2000)
	dst := openLog(t, filepath.Join(dir, "dst.db"))
	half := uint64(len(all) / 2)
	require.NoError(t, dst.Replace(7, nil, leafIter(all[:half])))
	roots := map[uint64][]byte{half: mth(dataOf(all[:half])), src.Size(): src.Root()}

	read := func(seed uint64) error {
		rng := rand.New(rand.NewPCG(seed, 0))
		size := dst.Size()
		root, err := dst.RootAt(size)
		if err != nil {
			return err
		}
		if !bytes.Equal(roots[size], root) {
			return fmt.Errorf("root at %d is %x, want %x", size, root, roots[size])
		}
		i := rng.Uint64N(size)
		p, err := dst.InclusionProof(i, size)
		if err != nil {
			return err
		}
		if err := VerifyInclusion(all[i].Data, i, size, p, root); err != nil {
			return fmt.Errorf("inclusion of %d in %d: %w", i, size, err)
		}
		from := rng.Uint64N(size)
		if err := dst.Range(from, min(from+50, size), func(seq uint64, lf Leaf) error {
			if !bytes.Equal(all[seq].Data, lf.Data) {
				return fmt.Errorf("range: entry %d is %q", seq, lf.Data)
			}
			return nil
		}); err != nil {
			return err
		}
		_, err = dst.Scan("org:a", from, size, 20, func(seq uint64, lf Leaf) (bool, error) {
			if !bytes.Equal(all[seq].Data, lf.Data) {
				return false, fmt.Errorf("scan: entry %d is %q", seq, lf.Data)
			}
			return true, nil
		})
		return err
	}

	done := make(chan struct{})
	ready := make(chan struct{}, 4)
	var g errgroup.Group
	for r := range uint64(4) {
		g.Go(func() error {
			err := read(r)
			ready <- struct{}{}
			for n := uint64(1); err == nil; n++ {
				select {
				case <-done:
					return nil
				default:
				}
				err = read(r<<32 | n)
			}
			return err
		})
	}
	for range 4 {
		<-ready // every reader is running
	}
	for range 3 {
		require.NoError(t, dst.Replace(src.LastIndex(), src.Root(), leafIter(all)))
	}
	close(done)
	require.NoError(t, g.Wait())
	requireSameLog(t, rng, src, dst)
}
