package audit

import (
	"bytes"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Entry returns the bytes of entry seq.
func (l *Log) Entry(seq uint64) ([]byte, error) {
	lf, err := l.Leaf(seq)
	return lf.Data, err
}

// Leaf returns entry seq with its time and labels.
func (l *Log) Leaf(seq uint64) (Leaf, error) {
	var out Leaf
	err := l.view(func(tx *bolt.Tx) error {
		if seq >= metaUint(tx, keySize) {
			return fmt.Errorf("entry %d: %w", seq, ErrNotFound)
		}
		lf, err := newEntryReader(tx).leaf(seq)
		out = lf
		out.Data = bytes.Clone(lf.Data)
		return err
	})
	return out, err
}

// Entries calls fn with each entry's bytes from seq from on, in order, until
// fn returns false or the log ends. entry is only valid during the call,
// and fn must not call methods of l other than Size, Root and LastIndex.
func (l *Log) Entries(from uint64, fn func(seq uint64, entry []byte) bool) error {
	return l.view(func(tx *bolt.Tx) error {
		er := newEntryReader(tx)
		for seq, size := from, metaUint(tx, keySize); seq < size; seq++ {
			_, data, err := er.record(seq)
			if err != nil {
				return err
			}
			if !fn(seq, data) {
				return nil
			}
		}
		return nil
	})
}

// Range calls fn for entries [from, to) in order inside one read
// transaction (used to stream a Raft snapshot while appends continue).
// fn's Leaf.Data is only valid during the call, and fn must not call
// methods of l other than Size, Root and LastIndex. It fails with
// ErrNotFound if to is beyond the log and returns fn's error as is.
func (l *Log) Range(from, to uint64, fn func(seq uint64, leaf Leaf) error) error {
	// Entries never change once written, so a long range (a Raft snapshot
	// streaming tens of millions of entries to a slow follower) is read
	// rangeTxEntries at a time, one short read transaction each (each
	// seeks once, then steps from chunk to chunk): a long-lived bbolt reader
	// would stop appends from growing the file's memory map until it ends.
	for start := from; ; {
		end := min(to, start+rangeTxEntries)
		err := l.view(func(tx *bolt.Tx) error {
			if err := checkRange(tx, start, to); err != nil {
				return err
			}
			_, err := walk(tx, start, end, func(seq uint64, lf Leaf) (bool, error) {
				return true, fn(seq, lf)
			})
			return err
		})
		if err != nil || end == to {
			return err
		}
		start = end
	}
}

// rangeTxEntries is how many entries Range reads per read transaction.
const rangeTxEntries = 4096

func checkRange(tx *bolt.Tx, from, to uint64) error {
	if from > to {
		return fmt.Errorf("%w: range [%d, %d)", ErrInvalid, from, to)
	}
	if size := metaUint(tx, keySize); to > size {
		return fmt.Errorf("range end %d > size %d: %w", to, size, ErrNotFound)
	}
	return nil
}

// walk calls fn for entries [from, to) of tx in order until fn returns false
// and returns the seq after the last entry visited (the failing entry's if
// fn fails).
func walk(tx *bolt.Tx, from, to uint64, fn func(seq uint64, lf Leaf) (bool, error)) (uint64, error) {
	er := newEntryReader(tx)
	for seq := from; seq < to; seq++ {
		lf, err := er.leaf(seq)
		if err != nil {
			return seq, err
		}
		ok, err := fn(seq, lf)
		if err != nil {
			return seq, err
		}
		if !ok {
			return seq + 1, nil
		}
	}
	return to, nil
}

// SeqAtTime is the first sequence number whose entry time is >= t (Size()
// if none), by binary search over the entry times, which never decrease:
// O(log n) reads.
func (l *Log) SeqAtTime(t time.Time) (uint64, error) {
	var seq uint64
	err := l.view(func(tx *bolt.Tx) error {
		er := newEntryReader(tx)
		lo, hi := uint64(0), metaUint(tx, keySize)
		for lo < hi { // invariant: entries before lo are before t, entries from hi on are not
			mid := lo + (hi-lo)/2
			et, err := er.time(mid)
			if err != nil {
				return err
			}
			if et.Before(t) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		seq = lo
		return nil
	})
	return seq, err
}

// Scan visits, in increasing sequence order, the entries in [from, to)
// carrying label (all entries when label == ""), reading the label index
// when label != "", so that the cost is proportional to the matching
// entries, not to the log. fn returns false to stop; its Leaf.Data is only
// valid during the call, and it must not call methods of l other than
// Size, Root and LastIndex. Scan stops after examining budget index rows or
// entries (budget <= 0: no limit) and returns the sequence to resume from:
// the next matching entry, or to when the range is exhausted. If fn fails,
// Scan returns its error as is, with resume at the failing entry. It fails
// with ErrNotFound if to is beyond the log.
func (l *Log) Scan(label string, from, to uint64, budget int, fn func(seq uint64, leaf Leaf) (bool, error)) (resume uint64, err error) {
	if len(label) > maxLabelLen {
		return 0, fmt.Errorf("%w: label of %d bytes", ErrInvalid, len(label))
	}
	err = l.view(func(tx *bolt.Tx) error {
		if err := checkRange(tx, from, to); err != nil {
			return err
		}
		if label == "" {
			n := 0
			resume, err = walk(tx, from, to, func(seq uint64, lf Leaf) (bool, error) {
				n++
				ok, err := fn(seq, lf)
				return ok && (budget <= 0 || n < budget), err
			})
			return err
		}
		resume, err = scanLabel(tx, label, from, to, budget, fn)
		return err
	})
	return resume, err
}

func scanLabel(tx *bolt.Tx, label string, from, to uint64, budget int, fn func(seq uint64, leaf Leaf) (bool, error)) (uint64, error) {
	prefix := labelPrefix(label)
	c, er := tx.Bucket(bucketLabels).Cursor(), newEntryReader(tx)
	n, stop := 0, false
	for k, bm := c.Seek(labelKey(label, from)); ; k, bm = c.Next() {
		start, ok := labelBlockOf(k, prefix)
		if !ok || start >= to {
			return to, nil
		}
		for seq := max(start, from); seq < min(start+labelBlock, to); seq++ {
			if !bitSet(bm, seq) {
				continue
			}
			if stop || (budget > 0 && n >= budget) {
				return seq, nil
			}
			n++
			lf, err := er.leaf(seq)
			if err != nil {
				return seq, err
			}
			cont, err := fn(seq, lf)
			if err != nil {
				return seq, err
			}
			stop = !cont
		}
	}
}
