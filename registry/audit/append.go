package audit

import (
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
)

// Leaf is one entry to append and how it can be found.
type Leaf struct {
	Data   []byte    // the exact leaf bytes (hashed with RFC 6962 leaf hashing)
	Time   time.Time // entry time; the caller guarantees it never decreases along the log
	Labels []string  // index labels, e.g. "org:acme", "type:DECISION", "mode:HIPAA" (each < 256 bytes)
}

// Batch is the leaves produced by the Raft log entry at LogIndex.
type Batch struct {
	LogIndex uint64
	Leaves   []Leaf
}

// AppendBatches appends, in one transaction (one fsync), every batch whose
// LogIndex is greater than LastIndex(), in order, and records the new
// LastIndex: the largest LogIndex given, even if its Leaves are empty.
// Batches with LogIndex <= LastIndex() are skipped, which makes re-applying
// Raft entries after a restart idempotent. LogIndex must increase within
// the call, entry times must not decrease (within the call and after the
// last stored entry) and labels must be 1 to 255 bytes, none repeated in a
// leaf: otherwise it fails with ErrInvalid. It returns the new size.
// Nothing is written if it fails. The batches are not retained.
func (l *Log) AppendBatches(batches []Batch) (size uint64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	h := l.head.Load()
	todo, err := l.pending(batches, h.lastIndex)
	if err != nil {
		return 0, err
	}
	if len(todo) == 0 {
		return h.size, nil
	}
	lastIndex := todo[len(todo)-1].LogIndex
	next, err := l.factory.NewRange(0, l.tree.End(), append([][]byte(nil), l.tree.Hashes()...))
	if err != nil {
		return 0, err
	}
	lastTime := l.lastTime
	err = l.db.Update(func(tx *bolt.Tx) error {
		w := newWriter(tx, next)
		for _, b := range todo {
			for _, lf := range b.Leaves {
				if err := w.append(lf); err != nil {
					return err
				}
				lastTime = lf.Time
			}
		}
		return w.finish(lastIndex)
	})
	if err != nil {
		return 0, fmt.Errorf("append audit batches up to Raft index %d: %w", lastIndex, err)
	}
	l.install(state{tree: next, lastTime: lastTime, lastIndex: lastIndex})
	return next.End(), nil
}

// pending checks batches and returns those after lastIndex.
func (l *Log) pending(batches []Batch, lastIndex uint64) ([]Batch, error) {
	for i := 1; i < len(batches); i++ {
		if batches[i].LogIndex <= batches[i-1].LogIndex {
			return nil, fmt.Errorf("%w: Raft index %d after %d", ErrInvalid, batches[i].LogIndex, batches[i-1].LogIndex)
		}
	}
	first := len(batches)
	for i, b := range batches {
		if b.LogIndex > lastIndex {
			first = i
			break
		}
	}
	todo := batches[first:]
	prev := l.lastTime
	for _, b := range todo {
		for j, lf := range b.Leaves {
			if err := checkLeaf(lf, prev); err != nil {
				return nil, fmt.Errorf("raft index %d, leaf %d: %w", b.LogIndex, j, err)
			}
			prev = lf.Time
		}
	}
	return todo, nil
}

// checkLeaf checks a leaf that follows an entry of time prev.
func checkLeaf(lf Leaf, prev time.Time) error {
	if lf.Time.Before(prev) {
		return fmt.Errorf("%w: entry time %s before the previous entry's %s",
			ErrInvalid, lf.Time.Format(time.RFC3339Nano), prev.Format(time.RFC3339Nano))
	}
	return checkLabels(lf.Labels)
}

// writer appends checked leaves to a compact range and the buckets of one
// write transaction. It holds each leaf (its bytes and labels) until it
// writes the leaf's chunk: at the latest, in finish.
type writer struct {
	entries, nodes, labels, meta *bolt.Bucket
	tree                         *compact.Range
	err                          error
	// bitmaps are the label index rows this transaction changes, written
	// once each by finish.
	bitmaps map[labelRow][]byte
	// chunk is the entries appended since the last chunk was written
	// (chunkBytes their records' size), the end of the tree: written as
	// one chunk when full and by finish.
	chunk      []Leaf
	chunkBytes int
}

// labelRow names a row of the label index (without building its key for
// every entry and label).
type labelRow struct {
	label string
	block uint64 // seq / labelBlock
}

func newWriter(tx *bolt.Tx, tree *compact.Range) *writer {
	w := &writer{
		entries: tx.Bucket(bucketEntries),
		nodes:   tx.Bucket(bucketNodes),
		labels:  tx.Bucket(bucketLabels),
		meta:    tx.Bucket(bucketMeta),
		tree:    tree,
		bitmaps: map[labelRow][]byte{},
	}
	// Sequence keys only ever grow: fill pages completely.
	w.entries.FillPercent = 1
	return w
}

// visit stores the hash of a complete subtree of at least 2^minStoredLevel
// leaves; smaller ones are computed from their entries when needed
// (nodeHashes).
func (w *writer) visit(id compact.NodeID, hash []byte) {
	if w.err == nil && id.Level >= minStoredLevel {
		w.err = w.nodes.Put(nodeKey(id), hash)
	}
}

func (w *writer) append(lf Leaf) error {
	n := recordLen(lf)
	if len(w.chunk) == chunkMaxEntries || (len(w.chunk) > 0 && w.chunkBytes+n > chunkMaxBytes) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	w.chunk = append(w.chunk, lf)
	w.chunkBytes += n
	seq := w.tree.End()
	for _, s := range lf.Labels {
		k := labelRow{label: s, block: seq / labelBlock}
		bm, ok := w.bitmaps[k]
		if !ok {
			bm = make([]byte, labelBlock/8)
			copy(bm, w.labels.Get(labelKey(s, seq)))
			w.bitmaps[k] = bm
		}
		i := seq % labelBlock
		bm[i/8] |= 1 << (i % 8)
	}
	if err := w.tree.Append(Hasher.HashLeaf(lf.Data), w.visit); err != nil {
		return err
	}
	return w.err
}

// flush writes the pending entries as a new chunk.
func (w *writer) flush() error {
	if len(w.chunk) == 0 {
		return nil
	}
	first := w.tree.End() - uint64(len(w.chunk))
	err := w.entries.Put(seqKey(first), encodeChunk(w.chunk))
	clear(w.chunk) // do not keep the caller's leaves
	w.chunk, w.chunkBytes = w.chunk[:0], 0
	return err
}

// finish writes the pending entries, the label index rows and records the
// size and the Raft index.
func (w *writer) finish(lastIndex uint64) error {
	if err := w.flush(); err != nil {
		return err
	}
	for k, bm := range w.bitmaps {
		if err := w.labels.Put(labelKey(k.label, k.block*labelBlock), bm); err != nil {
			return err
		}
	}
	if err := w.meta.Put(keySize, seqKey(w.tree.End())); err != nil {
		return err
	}
	return w.meta.Put(keyLastIndex, seqKey(lastIndex))
}
