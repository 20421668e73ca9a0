package attestation

import (
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// Decision batches: every decision of an audit batch is a leaf of an RFC
// 6962 Merkle tree (the leaf is the serialized DecisionStatement); each
// registry node that re-derived them signs the head (origin, Raft index,
// size, root, and the leaves it does not vouch for) once; a decision
// carries its inclusion proof and the quorum's signatures, and is
// certified only if the head does not list it refused. The tree is built here, in memory, because the
// merkle module offers proof verification and compact ranges but no
// in-memory tree that yields inclusion proofs outside its testonly package;
// proofs are verified with the module's proof.VerifyInclusion.

// ErrNotCertified: a decision that a quorum of registry nodes does not
// vouch for.
var ErrNotCertified = errors.New("decision not certified by a quorum of registry nodes")

var batchHasher = rfc6962.DefaultHasher

// BatchTree is the Merkle tree over a batch's statements.
type BatchTree struct {
	// levels[0] holds the leaf hashes; each level above, the hashes of the
	// complete subtrees of 2^level leaves (RFC 6962's left-heavy split
	// pairs leaves in this order, the unpaired last node rising unchanged).
	levels [][][]byte
}

// NewBatchTree hashes the statements of a batch, in order.
func NewBatchTree(statements [][]byte) *BatchTree {
	leaves := make([][]byte, len(statements))
	for i, s := range statements {
		leaves[i] = batchHasher.HashLeaf(s)
	}
	t := &BatchTree{levels: [][][]byte{leaves}}
	for cur := leaves; len(cur) > 1; {
		next := make([][]byte, 0, (len(cur)+1)/2)
		for i := 0; i+1 < len(cur); i += 2 {
			next = append(next, batchHasher.HashChildren(cur[i], cur[i+1]))
		}
		if len(cur)%2 == 1 {
			next = append(next, cur[len(cur)-1])
		}
		t.levels = append(t.levels, next)
		cur = next
	}
	return t
}

// Size is the number of leaves.
func (t *BatchTree) Size() uint64 { return uint64(len(t.levels[0])) }

// Root is the RFC 6962 root hash (of the empty tree for no leaves).
func (t *BatchTree) Root() []byte {
	if len(t.levels[0]) == 0 {
		return batchHasher.EmptyRoot()
	}
	return t.levels[len(t.levels)-1][0]
}

// Proof is the RFC 6962 inclusion proof of leaf i: at each level, the
// sibling of the node on i's path, when it has one (an unpaired last node
// rises without one).
func (t *BatchTree) Proof(i uint64) [][]byte {
	var out [][]byte
	for l := 0; l+1 < len(t.levels); l++ {
		level := t.levels[l]
		sib := i ^ 1
		if sib < uint64(len(level)) {
			out = append(out, level[sib])
		}
		i >>= 1
	}
	return out
}

// checkRefused refuses a head whose refused leaves are not strictly
// ascending or not all within the batch.
func checkRefused(h *trustfedv1.DecisionBatchHead) error {
	for i, leaf := range h.Refused {
		if leaf >= h.Size {
			return fmt.Errorf("%w: the batch head refuses leaf %d of a batch of %d decisions", ErrNotCertified, leaf, h.Size)
		}
		if i > 0 && leaf <= h.Refused[i-1] {
			return fmt.Errorf("%w: the batch head's refused leaves are not strictly ascending (%d after %d)", ErrNotCertified, leaf, h.Refused[i-1])
		}
	}
	return nil
}

// MarshalBatchHead is the deterministic encoding of h that nodes sign.
func MarshalBatchHead(h *trustfedv1.DecisionBatchHead) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("marshal decision batch head: %w", err)
	}
	return b, nil
}

// Quorum is the number of distinct registry nodes whose signatures a
// decision made at t needs: CheckpointQuorum over the published keys (a
// majority of the nodes holding a node key valid at t; 0 when none is).
func Quorum(keys DecisionKeys, t time.Time) int {
	q, _ := CheckpointQuorum(slices.Collect(maps.Values(keys)), t)
	return q
}

// VerifyCertificate checks that cert proves statement (a serialized
// DecisionStatement decided at decidedAt): the statement's inclusion in
// the batch whose head the signatures cover, and valid signatures over that
// head by at least need distinct nodes, each with a key of keys that
// belongs to that node and was valid at decidedAt; the head must not list
// the statement's leaf refused (its refused leaves strictly ascending and
// within the batch). It returns the head.
func VerifyCertificate(statement []byte, cert *trustfedv1.DecisionCertificate, keys DecisionKeys, decidedAt time.Time, need int) (*trustfedv1.DecisionBatchHead, error) {
	if cert == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrNotCertified)
	}
	var head trustfedv1.DecisionBatchHead
	if err := proto.Unmarshal(cert.BatchHead, &head); err != nil {
		return nil, fmt.Errorf("%w: the batch head does not parse: %v", ErrNotCertified, err)
	}
	if head.Size == 0 || cert.LeafIndex >= head.Size {
		return nil, fmt.Errorf("%w: leaf %d is outside a batch of %d decisions", ErrNotCertified, cert.LeafIndex, head.Size)
	}
	if err := checkRefused(&head); err != nil {
		return nil, err
	}
	if _, refused := slices.BinarySearch(head.Refused, cert.LeafIndex); refused {
		return nil, fmt.Errorf("%w: decision %d of the batch was refused by the signers", ErrNotCertified, cert.LeafIndex)
	}
	if len(cert.InclusionProof) > bits.Len64(head.Size) {
		return nil, fmt.Errorf("%w: an inclusion proof of %d hashes for a batch of %d", ErrNotCertified, len(cert.InclusionProof), head.Size)
	}
	if err := proof.VerifyInclusion(batchHasher, cert.LeafIndex, head.Size, batchHasher.HashLeaf(statement), cert.InclusionProof, head.Root); err != nil {
		return nil, fmt.Errorf("%w: the statement is not in the signed batch: %v", ErrNotCertified, err)
	}
	if need < 1 {
		return nil, fmt.Errorf("%w: no registry node held a key valid at %s", ErrNotCertified, fmtTime(decidedAt))
	}
	signed := map[string]bool{}
	var problems []string
	for _, s := range cert.Signatures {
		k, ok := keys[s.GetKeyId()]
		switch {
		case signed[s.GetNodeId()]:
			continue // one node counts once
		case !ok || k.GetNodeId() == "" || k.NodeId != s.GetNodeId():
			problems = append(problems, fmt.Sprintf("node %q: key %q is not one of its endorsed keys", s.GetNodeId(), s.GetKeyId()))
			continue
		}
		if err := CheckRegistryKeyAt(k, decidedAt); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		if err := Verify(k.PublicKey, PurposeDecisionBatch, cert.BatchHead, s.GetSignature()); err != nil {
			problems = append(problems, fmt.Sprintf("node %q: %v", s.GetNodeId(), err))
			continue
		}
		signed[s.NodeId] = true
	}
	if len(signed) < need {
		detail := ""
		if len(problems) > 0 {
			detail = " (" + strings.Join(problems, "; ") + ")"
		}
		return nil, fmt.Errorf("%w: %d valid node signatures, %d needed%s", ErrNotCertified, len(signed), need, detail)
	}
	return &head, nil
}
