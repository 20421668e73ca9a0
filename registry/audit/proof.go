package audit

import (
	"bytes"
	"fmt"
	"math/bits"

	"github.com/transparency-dev/merkle/proof"
	bolt "go.etcd.io/bbolt"
)

func checkSize(tx *bolt.Tx, size uint64) error {
	if have := metaUint(tx, keySize); size > have {
		return fmt.Errorf("size %d > %d: %w", size, have, ErrNotFound)
	}
	return nil
}

// RootAt is the root hash of the log's first size entries.
func (l *Log) RootAt(size uint64) ([]byte, error) {
	var root []byte
	err := l.view(func(tx *bolt.Tx) (err error) {
		if err := checkSize(tx, size); err != nil {
			return err
		}
		root, err = l.rootAt(tx, size)
		return err
	})
	return root, err
}

func (l *Log) rootAt(tx *bolt.Tx, size uint64) ([]byte, error) {
	hashes, err := subtreeHashes(tx, 0, size)
	if err != nil {
		return nil, err
	}
	r, err := l.factory.NewRange(0, size, hashes)
	if err != nil {
		return nil, err
	}
	return rootOf(r), nil
}

// InclusionProof proves entry index is in the tree of the first size entries.
func (l *Log) InclusionProof(index, size uint64) ([][]byte, error) {
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, err
	}
	return l.rehash(size, nodes)
}

// ConsistencyProof proves the tree of size1 entries is a prefix of the
// tree of size2 entries.
func (l *Log) ConsistencyProof(size1, size2 uint64) ([][]byte, error) {
	nodes, err := proof.Consistency(size1, size2)
	if err != nil {
		return nil, err
	}
	return l.rehash(size2, nodes)
}

func (l *Log) rehash(size uint64, nodes proof.Nodes) ([][]byte, error) {
	var hashes [][]byte
	err := l.view(func(tx *bolt.Tx) (err error) {
		if err := checkSize(tx, size); err != nil {
			return err
		}
		hashes, err = nodeHashes(tx, nodes.IDs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return nodes.Rehash(hashes, Hasher.HashChildren)
}

// Verify recomputes the tree from the stored entries and reports whether
// it matches the stored nodes (a log edited on disk fails), and checks the
// entries' times and the label index.
func (l *Log) Verify() error {
	return l.view(func(tx *bolt.Tx) error {
		size := metaUint(tx, keySize)
		r := l.factory.NewEmptyRange(0)
		var prev Leaf
		labels := 0
		lb := tx.Bucket(bucketLabels)
		_, err := walk(tx, 0, size, func(seq uint64, lf Leaf) (bool, error) {
			if lf.Time.Before(prev.Time) {
				return false, fmt.Errorf("%w: entry %d is older than entry %d", errCorrupt, seq, seq-1)
			}
			for _, s := range lf.Labels {
				if !bitSet(lb.Get(labelKey(s, seq)), seq) {
					return false, fmt.Errorf("%w: entry %d is missing from the index of label %q", errCorrupt, seq, s)
				}
			}
			labels += len(lf.Labels)
			prev = lf
			return true, r.Append(Hasher.HashLeaf(lf.Data), nil)
		})
		if err != nil {
			return err
		}
		indexed := 0
		if err := lb.ForEach(func(_, bm []byte) error {
			for _, b := range bm {
				indexed += bits.OnesCount8(b)
			}
			return nil
		}); err != nil {
			return err
		}
		if indexed != labels {
			return fmt.Errorf("%w: the label index holds %d entries, the entries %d labels", errCorrupt, indexed, labels)
		}
		n, err := countEntries(tx)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%w: audit log holds %d entries, its tree %d", errCorrupt, n, size)
		}
		stored, err := l.rootAt(tx, size)
		if err != nil {
			return err
		}
		if got := rootOf(r); !bytes.Equal(got, stored) {
			return fmt.Errorf("%w: audit log entries hash to %x, its tree to %x", errCorrupt, got, stored)
		}
		return nil
	})
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
