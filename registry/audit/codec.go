package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	bolt "go.etcd.io/bbolt"
)

// maxLabelLen is the longest label: its length is stored in one byte.
const maxLabelLen = 255

// attrsFixed is the size of an entry's attributes without labels: Unix
// seconds and nanoseconds.
const attrsFixed = 8 + 4

var errCorrupt = errors.New("audit log corrupt")

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

func nodeKey(id compact.NodeID) []byte {
	var k [9]byte
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k[:]
}

// labelPrefix is the label index's key prefix for label: its length, then
// its bytes (so that no label's keys are a prefix of another's).
func labelPrefix(label string) []byte {
	k := make([]byte, 0, 1+len(label)+8)
	k = append(k, byte(len(label)))
	return append(k, label...)
}

// The label index keeps, per label, one row per block of labelBlock
// consecutive entries: a bitmap of the entries in the block that carry the
// label. Appending a batch then rewrites one row per label it touches, not
// one row per entry and label (decisions come in thousands per second, all
// with the same few labels), and a scan still reads only the blocks where
// the label occurs.
const labelBlock = 256

// labelKey is the index row of label for the block holding seq.
func labelKey(label string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(labelPrefix(label), seq/labelBlock)
}

// labelBlockOf returns the first seq of the block of a label index key with
// prefix, false if k is not one.
func labelBlockOf(k, prefix []byte) (uint64, bool) {
	if len(k) != len(prefix)+8 || !bytes.HasPrefix(k, prefix) {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[len(prefix):]) * labelBlock, true
}

// bitSet reports whether seq's bit is set in its block's bitmap.
func bitSet(bitmap []byte, seq uint64) bool {
	i := seq % labelBlock
	return len(bitmap) == labelBlock/8 && bitmap[i/8]&(1<<(i%8)) != 0
}

// appendAttrs appends an entry's attributes to v: its time, then its
// labels.
func appendAttrs(v []byte, t time.Time, labels []string) []byte {
	v = binary.BigEndian.AppendUint64(v, uint64(t.Unix()))
	v = binary.BigEndian.AppendUint32(v, uint32(t.Nanosecond()))
	for _, s := range labels {
		v = append(v, byte(len(s)))
		v = append(v, s...)
	}
	return v
}

func decodeTime(v []byte) (time.Time, error) {
	if len(v) < attrsFixed {
		return time.Time{}, fmt.Errorf("%w: attributes of %d bytes", errCorrupt, len(v))
	}
	sec := int64(binary.BigEndian.Uint64(v))
	nsec := int64(binary.BigEndian.Uint32(v[8:]))
	return time.Unix(sec, nsec).UTC(), nil
}

func decodeAttrs(v []byte) (time.Time, []string, error) {
	t, err := decodeTime(v)
	if err != nil {
		return t, nil, err
	}
	var labels []string
	for rest := v[attrsFixed:]; len(rest) > 0; {
		n := int(rest[0])
		if len(rest) < 1+n {
			return t, nil, fmt.Errorf("%w: truncated label", errCorrupt)
		}
		labels = append(labels, string(rest[1:1+n]))
		rest = rest[1+n:]
	}
	return t, labels, nil
}

// checkLabels refuses empty, over-long and repeated labels.
func checkLabels(labels []string) error {
	for i, s := range labels {
		if s == "" || len(s) > maxLabelLen {
			return fmt.Errorf("%w: label %q: want 1 to %d bytes", ErrInvalid, s, maxLabelLen)
		}
		for _, o := range labels[:i] {
			if o == s {
				return fmt.Errorf("%w: label %q given twice", ErrInvalid, s)
			}
		}
	}
	return nil
}

func metaUint(tx *bolt.Tx, key []byte) uint64 {
	if v := tx.Bucket(bucketMeta).Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// subtreeHashes returns the hashes of the perfect subtrees covering
// [begin, end), left to right, from the stored nodes.
func subtreeHashes(tx *bolt.Tx, begin, end uint64) ([][]byte, error) {
	return nodeHashes(tx, compact.RangeNodes(begin, end, nil))
}

// minStoredLevel is the lowest tree level whose subtree hashes are stored:
// a subtree of fewer than 2^minStoredLevel = 16 leaves is hashed from its
// entries when a proof or a root needs it (at most 31 hashes each), which
// saves a put per appended entry: 1/16 of the nodes are stored.
const minStoredLevel = 4

// nodeHashes returns the hashes of the given complete subtrees: read from
// the nodes bucket from minStoredLevel up, hashed from the entries below.
func nodeHashes(tx *bolt.Tx, ids []compact.NodeID) ([][]byte, error) {
	nb, er := tx.Bucket(bucketNodes), newEntryReader(tx)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		if id.Level < minStoredLevel {
			h, err := hashEntries(er, id.Index<<id.Level, (id.Index+1)<<id.Level)
			if err != nil {
				return nil, err
			}
			out[i] = h
			continue
		}
		v := nb.Get(nodeKey(id))
		if len(v) != sha256.Size {
			return nil, fmt.Errorf("audit log node (level %d, index %d) is missing", id.Level, id.Index)
		}
		out[i] = bytes.Clone(v)
	}
	return out, nil
}

// hashEntries is the RFC 6962 hash of the perfect subtree of entries
// [begin, end) (end-begin a power of two), read in order.
func hashEntries(er *entryReader, begin, end uint64) ([]byte, error) {
	if end-begin == 1 {
		_, data, err := er.record(begin)
		if err != nil {
			return nil, err
		}
		return Hasher.HashLeaf(data), nil
	}
	mid := begin + (end-begin)/2
	l, err := hashEntries(er, begin, mid)
	if err != nil {
		return nil, err
	}
	r, err := hashEntries(er, mid, end)
	if err != nil {
		return nil, err
	}
	return Hasher.HashChildren(l, r), nil
}
