// Package audit is trustfed's tamper-evident audit log (AG-783 R8, E01–E07,
// Scenario C): an append-only Merkle tree with RFC 6962 hashing, kept on
// disk, with inclusion and consistency proofs and signed tree heads in the
// C2SP tlog-checkpoint format, so that anyone holding the registry's public
// key can check that the history they are shown is complete and was never
// rewritten.
//
// The tree arithmetic (compact ranges, proof shapes, verification) is
// github.com/transparency-dev/merkle; signed notes are
// golang.org/x/mod/sumdb/note. This package stores the leaves and every
// complete subtree hash in a bbolt file, so a proof costs O(log n) reads
// however large the log grows, and appends a batch of entries in one
// transaction (one fsync per batch: group commit).
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// Hasher is the RFC 6962 hasher (SHA-256) of the log.
var Hasher = rfc6962.DefaultHasher

var (
	bucketEntries = []byte("entries") // leaf index -> entry bytes
	bucketNodes   = []byte("nodes")   // level, index -> hash of a complete subtree
	bucketMeta    = []byte("meta")
	keySize       = []byte("size")
)

// ErrNotFound is returned for an index or size beyond the log.
var ErrNotFound = errors.New("not in the log")

// Log is an append-only Merkle log on disk. Appends must come from one
// goroutine at a time (the state machine); reads and proofs may run
// concurrently with them.
type Log struct {
	db      *bolt.DB
	factory *compact.RangeFactory
	// tree is the compact range [0, size): the hashes of the perfect
	// subtrees whose concatenation is the whole log.
	tree *compact.Range
}

// Open opens (or creates) the log at path and checks that its stored
// nodes still produce the stored leaves' tree.
func Open(path string) (*Log, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l := &Log{db: db, factory: &compact.RangeFactory{Hash: Hasher.HashChildren}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntries, bucketNodes, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		size := sizeOf(tx)
		hashes, err := l.subtreeHashes(tx, 0, size)
		if err != nil {
			return err
		}
		l.tree, err = l.factory.NewRange(0, size, hashes)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	return l, nil
}

// Close closes the log.
func (l *Log) Close() error { return l.db.Close() }

func nodeKey(id compact.NodeID) []byte {
	var k [9]byte
	k[0] = byte(id.Level)
	binary.BigEndian.PutUint64(k[1:], id.Index)
	return k[:]
}

func indexKey(i uint64) []byte { return binary.BigEndian.AppendUint64(nil, i) }

func sizeOf(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(keySize); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Size is the number of entries.
func (l *Log) Size() uint64 { return l.tree.End() }

// Root is the root hash of the whole log (the empty tree's hash when empty).
func (l *Log) Root() []byte {
	root, _ := l.tree.GetRootHash(nil)
	if root == nil {
		return Hasher.EmptyRoot()
	}
	return root
}

// Append adds entries at the end of the log in one transaction and returns
// the new size and root. Nothing is appended if it fails.
func (l *Log) Append(entries [][]byte) (size uint64, root []byte, err error) {
	if len(entries) == 0 {
		return l.Size(), l.Root(), nil
	}
	next, err := l.factory.NewRange(0, l.tree.End(), append([][]byte(nil), l.tree.Hashes()...))
	if err != nil {
		return 0, nil, err
	}
	err = l.db.Update(func(tx *bolt.Tx) error {
		eb, nb := tx.Bucket(bucketEntries), tx.Bucket(bucketNodes)
		var werr error
		visit := func(id compact.NodeID, hash []byte) {
			if werr == nil {
				werr = nb.Put(nodeKey(id), hash)
			}
		}
		for _, e := range entries {
			if err := eb.Put(indexKey(next.End()), e); err != nil {
				return err
			}
			if err := next.Append(Hasher.HashLeaf(e), visit); err != nil {
				return err
			}
			if werr != nil {
				return werr
			}
		}
		return tx.Bucket(bucketMeta).Put(keySize, indexKey(next.End()))
	})
	if err != nil {
		return 0, nil, fmt.Errorf("append %d audit entries: %w", len(entries), err)
	}
	l.tree = next
	return l.Size(), l.Root(), nil
}

// Entry returns entry i.
func (l *Log) Entry(i uint64) ([]byte, error) {
	var out []byte
	err := l.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEntries).Get(indexKey(i))
		if v == nil {
			return fmt.Errorf("entry %d: %w", i, ErrNotFound)
		}
		out = bytes.Clone(v)
		return nil
	})
	return out, err
}

// Entries calls fn with each entry from index from on, in order, until fn
// returns false or the log ends.
func (l *Log) Entries(from uint64, fn func(i uint64, entry []byte) bool) error {
	return l.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		for k, v := c.Seek(indexKey(from)); k != nil; k, v = c.Next() {
			if !fn(binary.BigEndian.Uint64(k), v) {
				return nil
			}
		}
		return nil
	})
}

// subtreeHashes returns the hashes of the perfect subtrees covering
// [begin, end), left to right, from the stored nodes.
func (l *Log) subtreeHashes(tx *bolt.Tx, begin, end uint64) ([][]byte, error) {
	ids := compact.RangeNodes(begin, end, nil)
	return nodeHashes(tx, ids)
}

func nodeHashes(tx *bolt.Tx, ids []compact.NodeID) ([][]byte, error) {
	nb := tx.Bucket(bucketNodes)
	out := make([][]byte, len(ids))
	for i, id := range ids {
		v := nb.Get(nodeKey(id))
		if len(v) != sha256.Size {
			return nil, fmt.Errorf("audit log node (level %d, index %d) is missing", id.Level, id.Index)
		}
		out[i] = bytes.Clone(v)
	}
	return out, nil
}

// RootAt is the root hash of the log's first size entries.
func (l *Log) RootAt(size uint64) ([]byte, error) {
	if size > l.Size() {
		return nil, fmt.Errorf("size %d > %d: %w", size, l.Size(), ErrNotFound)
	}
	if size == 0 {
		return Hasher.EmptyRoot(), nil
	}
	var root []byte
	err := l.db.View(func(tx *bolt.Tx) error {
		hashes, err := l.subtreeHashes(tx, 0, size)
		if err != nil {
			return err
		}
		r, err := l.factory.NewRange(0, size, hashes)
		if err != nil {
			return err
		}
		root, err = r.GetRootHash(nil)
		return err
	})
	return root, err
}

// InclusionProof proves entry index is in the tree of the first size entries.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	if size > l.Size() {
		return nil, fmt.Errorf("size %d > %d: %w", size, l.Size(), ErrNotFound)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return l.rehash(nodes)
}

// ConsistencyProof proves the tree of size1 entries is a prefix of the
// tree of size2 entries.
func (l *Log) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	if size2 > l.Size() {
		return nil, fmt.Errorf("size %d > %d: %w", size2, l.Size(), ErrNotFound)
	}
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return l.rehash(nodes)
}

func (l *Log) rehash(nodes proof.Nodes) ([][]byte, error) {
	var hashes [][]byte
	err := l.db.View(func(tx *bolt.Tx) (err error) {
		hashes, err = nodeHashes(tx, nodes.IDs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, Hasher.HashChildren)
}

// Verify recomputes the tree from the stored entries and reports whether
// it matches the stored nodes: a log edited on disk fails.
func (l *Log) Verify() error {
	r := l.factory.NewEmptyRange(0)
	var n uint64
	err := l.Entries(0, func(i uint64, e []byte) bool {
		n = i + 1
		return r.Append(Hasher.HashLeaf(e), nil) == nil
	})
	if err != nil {
		return err
	}
	if n != l.Size() || r.End() != l.Size() {
		return fmt.Errorf("audit log holds %d entries, its tree %d", n, l.Size())
	}
	got, _ := r.GetRootHash(nil)
	if got == nil {
		got = Hasher.EmptyRoot()
	}
	if !bytes.Equal(got, l.Root()) {
		return fmt.Errorf("audit log entries hash to %x, its tree to %x", got, l.Root())
	}
	return nil
}

// VerifyInclusion checks an inclusion proof of entry at index in the tree
// of size with root.
func VerifyInclusion(entry []byte, index, size uint64, proofHashes [][]byte, root []byte) error {
	return proof.VerifyInclusion(Hasher, index, size, Hasher.HashLeaf(entry), proofHashes, root)
}

// VerifyConsistency checks that the tree (size1, root1) is a prefix of the
// tree (size2, root2).
func VerifyConsistency(size1, size2 uint64, proofHashes [][]byte, root1, root2 []byte) error {
	return proof.VerifyConsistency(Hasher, size1, size2, proofHashes, root1, root2)
}
