package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// replaceTxLeaves is how many entries Replace writes per transaction, so
// that a log of tens of millions of entries is never held in memory.
const replaceTxLeaves = 4096

// replacePath is where Replace builds the new log.
func replacePath(path string) string { return path + ".replace" }

// Replace atomically replaces the whole log with the leaves yielded by next
// (until it returns ok=false), recording lastIndex as LastIndex(). It builds
// the new log in a file next to the current one (path + ".replace"), in
// transactions of a bounded number of entries synced once at the end,
// checks, if wantRoot != nil, that its root is wantRoot (ErrRootMismatch
// otherwise), then renames it over the current file and swaps it in. If it
// fails the current log is untouched (but for an error closing the old file
// or syncing the directory, reported after the swap). Leaves are checked as
// by AppendBatches; next may reuse a leaf's buffers once called again.
// Readers may run during Replace: they see the old log or the new one,
// never a mix.
func (l *Log) Replace(lastIndex uint64, wantRoot []byte, next func() (Leaf, bool, error)) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	db, st, err := l.build(lastIndex, wantRoot, next)
	if err != nil {
		return fmt.Errorf("replace audit log %s: %w", l.path, err)
	}
	l.mu.Lock()
	if err := os.Rename(db.Path(), l.path); err != nil {
		l.mu.Unlock()
		_ = db.Close()
		_ = os.Remove(db.Path())
		return fmt.Errorf("replace audit log %s: %w", l.path, err)
	}
	old := l.db
	l.db = db
	l.install(st)
	l.mu.Unlock()
	// No reader holds the old file any more: readers hold the lock for
	// their whole transaction.
	return errors.Join(old.Close(), syncDir(filepath.Dir(l.path)))
}

// build writes the leaves of next to a new file and returns it open,
// synced, and its writer state.
func (l *Log) build(lastIndex uint64, wantRoot []byte, next func() (Leaf, bool, error)) (_ *bolt.DB, _ state, err error) {
	path := replacePath(l.path)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, state{}, err
	}
	// Sync once at the end, not at every transaction: until it is renamed,
	// the file is nothing.
	db, st, err := l.openDB(path, true)
	if err != nil {
		return nil, state{}, err
	}
	defer func() {
		if err != nil {
			_ = db.Close()
			_ = os.Remove(path)
		}
	}()
	var prev time.Time
	for done := false; !done; {
		err := db.Update(func(tx *bolt.Tx) error {
			w := newWriter(tx, st.tree)
			for range replaceTxLeaves {
				lf, ok, err := next()
				if err != nil {
					return err
				}
				if !ok {
					done = true
					break
				}
				if err := checkLeaf(lf, prev); err != nil {
					return fmt.Errorf("entry %d: %w", st.tree.End(), err)
				}
				// The writer holds the leaf until it writes its chunk,
				// and next may reuse its buffers.
				lf.Data, lf.Labels = bytes.Clone(lf.Data), slices.Clone(lf.Labels)
				if err := w.append(lf); err != nil {
					return err
				}
				prev = lf.Time
			}
			return w.finish(lastIndex)
		})
		if err != nil {
			return nil, state{}, err
		}
	}
	st.lastTime, st.lastIndex = prev, lastIndex
	if root := rootOf(st.tree); wantRoot != nil && !bytes.Equal(root, wantRoot) {
		return nil, state{}, fmt.Errorf("%w: rebuilt %d entries with root %x, want %x", ErrRootMismatch, st.tree.End(), root, wantRoot)
	}
	db.NoSync = l.noSync
	if err := db.Sync(); err != nil {
		return nil, state{}, err
	}
	return db, st, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
