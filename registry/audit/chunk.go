package audit

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The entries bucket holds the entries in chunks: one value per run of
// consecutive entries (at most chunkMaxEntries, about chunkMaxBytes), keyed
// by the seq of its first entry. Appending then costs one bbolt put per
// chunk rather than two per entry (its leaf bytes, its time and labels),
// a large part of the CPU of an append; reading an entry seeks to its
// chunk and slices it (the header gives every entry's offsets), and
// walking the log reads each chunk once. Each AppendBatches call (and each transaction of Replace)
// writes its entries as new chunks: a chunk is never rewritten, so the
// file holds smaller chunks where the log was appended in small batches.
//
// A chunk is
//
//	count (2 bytes) ‖ count × (attrs end (4 bytes) ‖ record end (4 bytes)) ‖ records
//
// with the ends relative to the start of the records (entry i's record
// starts where entry i-1's ends, the first at 0), and a record
//
//	time (8-byte Unix seconds ‖ 4-byte nanoseconds) ‖ labels (1-byte length ‖ label)* ‖ leaf bytes
//
// all integers big-endian.
const (
	// chunkMaxEntries is the most entries in a chunk (small entries).
	chunkMaxEntries = 256
	// chunkMaxBytes closes a chunk before its records pass 32 KiB (~70
	// decisions of ~450 bytes; a chunk holds at least one entry whatever
	// its size). Larger chunks would save few more puts but cost more
	// copying: bbolt rewrites, at each commit, the whole leaf page holding
	// the last chunks, and a leaf page keeps at least two of them however
	// large. Measured on BenchmarkAppendBatches (batch=512/nosync), chunks
	// of 256 entries of 400 bytes (~110 KB) were slower than 16 to 64 KiB.
	chunkMaxBytes = 32 << 10

	chunkCountLen = 2 // entry count
	chunkEndsLen  = 8 // per entry: end of its attributes, end of its record
)

// recordLen is the size of lf's record in a chunk.
func recordLen(lf Leaf) int {
	n := attrsFixed + len(lf.Data)
	for _, s := range lf.Labels {
		n += 1 + len(s)
	}
	return n
}

// encodeChunk encodes 1 to chunkMaxEntries checked leaves as a chunk.
func encodeChunk(leaves []Leaf) []byte {
	head := chunkCountLen + chunkEndsLen*len(leaves)
	n := head
	for _, lf := range leaves {
		n += recordLen(lf)
	}
	v := make([]byte, head, n)
	binary.BigEndian.PutUint16(v, uint16(len(leaves)))
	ends := v[chunkCountLen:head]
	for i, lf := range leaves {
		v = appendAttrs(v, lf.Time, lf.Labels)
		binary.BigEndian.PutUint32(ends[chunkEndsLen*i:], uint32(len(v)-head))
		v = append(v, lf.Data...)
		binary.BigEndian.PutUint32(ends[chunkEndsLen*i+4:], uint32(len(v)-head))
	}
	return v
}

// chunk is a decoded chunk header; its slices point into the stored value.
type chunk struct {
	first uint64 // seq of its first entry
	n     uint64 // entry count (0: no chunk)
	ends  []byte // n × (attrs end, record end)
	body  []byte // the records
}

// parseChunk decodes the header of the chunk v stored at key first. The
// record offsets are checked when an entry is read (record).
func parseChunk(first uint64, v []byte) (chunk, error) {
	if len(v) < chunkCountLen {
		return chunk{}, fmt.Errorf("%w: chunk at entry %d has %d bytes", errCorrupt, first, len(v))
	}
	n := int(binary.BigEndian.Uint16(v))
	head := chunkCountLen + chunkEndsLen*n
	if n == 0 || len(v) < head {
		return chunk{}, fmt.Errorf("%w: chunk at entry %d has %d entries in %d bytes", errCorrupt, first, n, len(v))
	}
	return chunk{first: first, n: uint64(n), ends: v[chunkCountLen:head], body: v[head:]}, nil
}

// holds reports whether seq is in the chunk.
func (c *chunk) holds(seq uint64) bool { return seq >= c.first && seq-c.first < c.n }

// record returns the attributes and the leaf bytes of entry seq, which the
// chunk holds; they point into the stored value.
func (c *chunk) record(seq uint64) (attrs, data []byte, err error) {
	i := seq - c.first
	var start uint32
	if i > 0 {
		start = binary.BigEndian.Uint32(c.ends[chunkEndsLen*(i-1)+4:])
	}
	mid := binary.BigEndian.Uint32(c.ends[chunkEndsLen*i:])
	end := binary.BigEndian.Uint32(c.ends[chunkEndsLen*i+4:])
	if start > mid || mid > end || uint64(end) > uint64(len(c.body)) {
		return nil, nil, fmt.Errorf("%w: entry %d at [%d, %d, %d) in a chunk of %d bytes of records", errCorrupt, seq, start, mid, end, len(c.body))
	}
	return c.body[start:mid:mid], c.body[mid:end:end], nil
}

// entryReader reads the entries of one transaction. It keeps the chunk of
// the last entry read: entries read in order cost one seek, then one
// cursor step per chunk.
type entryReader struct {
	c  *bolt.Cursor
	ch chunk
}

func newEntryReader(tx *bolt.Tx) *entryReader {
	return &entryReader{c: tx.Bucket(bucketEntries).Cursor()}
}

// record returns the attributes and leaf bytes of entry seq, which must
// exist (errCorrupt otherwise); they are only valid in the transaction.
func (r *entryReader) record(seq uint64) (attrs, data []byte, err error) {
	if !r.ch.holds(seq) {
		if err := r.load(seq); err != nil {
			return nil, nil, err
		}
	}
	return r.ch.record(seq)
}

// load makes the chunk holding seq the current one.
func (r *entryReader) load(seq uint64) error {
	var k, v []byte
	if r.ch.n > 0 && seq == r.ch.first+r.ch.n {
		k, v = r.c.Next() // the next chunk, most likely
	}
	if !isSeq(k, seq) {
		key := seqKey(seq)
		k, v = r.c.Seek(key)
		switch {
		case k == nil:
			k, v = r.c.Last()
		case !bytes.Equal(k, key):
			k, v = r.c.Prev() // the chunk starting before seq
		}
	}
	r.ch = chunk{}
	if len(k) != 8 || binary.BigEndian.Uint64(k) > seq {
		return fmt.Errorf("%w: entry %d is missing", errCorrupt, seq)
	}
	ch, err := parseChunk(binary.BigEndian.Uint64(k), v)
	if err != nil {
		return err
	}
	if !ch.holds(seq) {
		return fmt.Errorf("%w: entry %d is missing", errCorrupt, seq)
	}
	r.ch = ch
	return nil
}

// leaf reads entry seq, which must exist; its Data is only valid in the
// transaction.
func (r *entryReader) leaf(seq uint64) (Leaf, error) {
	attrs, data, err := r.record(seq)
	if err != nil {
		return Leaf{}, err
	}
	t, labels, err := decodeAttrs(attrs)
	if err != nil {
		return Leaf{}, fmt.Errorf("entry %d: %w", seq, err)
	}
	return Leaf{Data: data, Time: t, Labels: labels}, nil
}

// time reads the time of entry seq, which must exist.
func (r *entryReader) time(seq uint64) (time.Time, error) {
	attrs, _, err := r.record(seq)
	if err != nil {
		return time.Time{}, err
	}
	t, err := decodeTime(attrs)
	if err != nil {
		return time.Time{}, fmt.Errorf("entry %d: %w", seq, err)
	}
	return t, nil
}

// countEntries counts the entries of the chunks of tx, checking that they
// follow each other from entry 0 without gap or overlap.
func countEntries(tx *bolt.Tx) (uint64, error) {
	var n uint64
	c := tx.Bucket(bucketEntries).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if !isSeq(k, n) {
			return n, fmt.Errorf("%w: chunk key %x after %d entries", errCorrupt, k, n)
		}
		ch, err := parseChunk(n, v)
		if err != nil {
			return n, err
		}
		n += ch.n
	}
	return n, nil
}

func isSeq(k []byte, seq uint64) bool { return len(k) == 8 && binary.BigEndian.Uint64(k) == seq }
