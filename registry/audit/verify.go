package audit

import (
	"bytes"
	"context"
	"fmt"
)

// VerifyPrefix re-hashes entries [0, size) and checks they produce the
// stored tree of that size: an entry rewritten on disk is caught. Unlike
// Verify it reads in short transactions (see Range), so it can run in the
// background on a live node while appends continue, and it stops when ctx
// ends.
func (l *Log) VerifyPrefix(ctx context.Context, size uint64) error {
	r := l.factory.NewEmptyRange(0)
	err := l.Range(0, size, func(seq uint64, lf Leaf) error {
		if seq%rangeTxEntries == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		return r.Append(Hasher.HashLeaf(lf.Data), nil)
	})
	if err != nil {
		return err
	}
	stored, err := l.RootAt(size)
	if err != nil {
		return err
	}
	if got := rootOf(r); !bytes.Equal(got, stored) {
		return fmt.Errorf("%w: the first %d entries hash to %x, the stored tree to %x", errCorrupt, size, got, stored)
	}
	return nil
}
