package decision

import (
	"fmt"
	"slices"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// Verdict is what a replica concludes about a decision batch: the leaves
// (positions among the batch's decisions) it does not vouch for, each for
// a reason every honest replica that applied the same log gives the same
// way (Deterministic), and why. It vouches for every other decision.
type Verdict struct {
	Refused []uint64         // strictly ascending
	Reasons map[uint64]error // why each refused leaf is
}

// VouchBatch checks every decision of b with check (Vouch when nil) and
// returns the verdict. A decision refused for a node-local reason (this
// replica no longer keeps the state it needs: not Deterministic) makes it
// return an error instead: the replica then vouches for nothing in the
// batch, as its verdict would not be the one honest replicas agree on.
func VouchBatch(b state.DecisionBatch, check func(state.DecisionBatch, *trustfedv1.DecisionStatement) error) (Verdict, error) {
	if check == nil {
		check = Vouch
	}
	v := Verdict{Reasons: map[uint64]error{}}
	for i, st := range b.Statements {
		err := check(b, st)
		switch {
		case err == nil:
		case Deterministic(err):
			v.Refused = append(v.Refused, uint64(i))
			v.Reasons[uint64(i)] = err
		default:
			return Verdict{}, fmt.Errorf("decision %d of the batch at index %d: %w", i, b.Index, err)
		}
	}
	return v, nil
}

// Head is the serialized DecisionBatchHead a replica with verdict v signs
// for b, the batch of the audit log named origin, and the batch's Merkle
// root. Replicas that applied the same log compute the same bytes.
func (v Verdict) Head(origin string, b state.DecisionBatch) (head, root []byte, err error) {
	return v.HeadOf(origin, b, attestation.NewBatchTree(b.Raw))
}

// HeadOf is Head with the batch's Merkle tree (attestation.NewBatchTree of
// b.Raw) already built.
func (v Verdict) HeadOf(origin string, b state.DecisionBatch, tree *attestation.BatchTree) (head, root []byte, err error) {
	root = tree.Root()
	head, err = attestation.MarshalBatchHead(&trustfedv1.DecisionBatchHead{
		Origin: origin, LogIndex: b.Index, Size: tree.Size(), Root: root, Refused: slices.Clone(v.Refused),
	})
	return head, root, err
}

// Vouched reports whether v vouches for leaf i.
func (v Verdict) Vouched(i uint64) bool {
	_, refused := slices.BinarySearch(v.Refused, i)
	return !refused
}
