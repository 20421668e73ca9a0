package decision

import (
	"errors"
	"fmt"
	"strings"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Recheck re-evaluates the decision st records on the state r, at the
// statement's decided_at and holding the authorisation use it names, and
// reports how st differs from what that state gives: nil when every output
// of the statement (decision, reasons, levels and their caps, agreement,
// controls, authorisation, valid_until) is the one Evaluate derives. Audit
// replay and a replica vouching for a batch of decisions use it.
func Recheck(r *state.Reader, st *trustfedv1.DecisionStatement) error {
	req := &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: st.FromOrganizationId,
		ToOrganizationId:   st.ToOrganizationId,
		Action:             st.Action,
		DataTypes:          st.DataTypes,
		Value:              st.Value,
		SessionId:          st.SessionId,
		AuthorizationId:    presentedAuthorization(st),
	}
	if _, ok := policy.RequiredLevel(req.Action); !ok {
		return fmt.Errorf("unknown action %q", req.Action)
	}
	if st.DecidedAt == nil {
		return fmt.Errorf("the statement has no decided_at")
	}
	now := st.DecidedAt.AsTime()
	got, err := Evaluate(r, req, now, st.AuthorizationUseIndex)
	if err != nil {
		return fmt.Errorf("the check fails: %w", err)
	}
	if diffs := diffDecision(st, got, timestamppb.New(now.Add(r.FreshnessWindow()))); len(diffs) > 0 {
		return fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return nil
}

// ErrRederive: a decision does not re-derive on a replica's state (Vouch).
// Replicas that applied the same log re-derive the same way, so a replica
// that gets it while a quorum of others vouched for the same batch is the
// one whose state differs.
var ErrRederive = errors.New("the decision does not re-derive on this state")

// Why a replica does not vouch for a decision (Vouch). Every reason but
// ErrStateNotKept is the same on every replica that applied the same log:
// such a decision is listed refused in the batch head the replica signs
// (registry/cosign.go), and the rest of the batch is still vouched for.
var (
	// ErrStale: the decision re-derives at its index but no longer holds
	// on the state just before the batch (a later write changed it). It
	// is an ErrRederive; decided again on the new state, it may be
	// certified.
	ErrStale = fmt.Errorf("%w: it no longer holds on the state before the batch", ErrRederive)
	// ErrInvalid: the statement is not one any replica vouches for in this
	// batch (it does not decode, has no decided_at, was decided outside
	// the batch's time window or at an index not before the batch).
	ErrInvalid = errors.New("the statement is not valid in this batch")
	// ErrStateNotKept: this replica no longer keeps the state at the
	// decision's index. It is node-local: the replica vouches for nothing
	// in the batch.
	ErrStateNotKept = errors.New("the state at the decision's index is no longer kept here")
)

// Deterministic reports whether err, from Vouch, is a reason every honest
// replica that applied the same log gives for the same decision.
func Deterministic(err error) bool {
	return errors.Is(err, ErrRederive) || errors.Is(err, ErrInvalid)
}

// Bounds on a decision's decided_at against the leader-stamped time of the
// audit batch that logs it (Vouch): a node cannot back-date a decision by
// more than MaxDecisionAge (e.g. to before a passport expired) and have it
// vouched for.
const (
	MaxDecisionAge  = 10 * time.Second
	MaxDecisionLead = 2 * time.Second
)

// Vouch reports whether a replica may vouch for decision st of the audit
// batch b it applied (registry/cosign.go): nil only if
//   - the statement decodes and was decided at a Raft index before the
//     batch, at a time within [logged − MaxDecisionAge, logged +
//     MaxDecisionLead] of the batch's leader-stamped time;
//   - re-evaluated on this replica's own state at that index, at that time,
//     it gives the same outputs (Recheck);
//   - and it still holds on the state just before the batch: a decision
//     made on a state that a later write changed is not vouched for (the
//     caller retries and gets one made on the new state). When no command
//     changed the trust state since the decision's index the two states
//     are the same for decisions, and it is evaluated once.
func Vouch(b state.DecisionBatch, st *trustfedv1.DecisionStatement) error {
	return vouch(b, st, true)
}

// VouchOwn is Vouch for a decision this replica made itself, on its own
// state at the statement's index: that the statement re-derives there is
// what its own evaluation a moment ago established (Evaluate is a function
// of the state and the request), so it is not evaluated again; every other
// check of Vouch is made, the one against the state just before the batch
// included. It must be given only statements this replica's own decide
// path produced (registry/cosign.go keeps them).
func VouchOwn(b state.DecisionBatch, st *trustfedv1.DecisionStatement) error {
	return vouch(b, st, false)
}

func vouch(b state.DecisionBatch, st *trustfedv1.DecisionStatement, rederive bool) error {
	switch {
	case st == nil:
		return fmt.Errorf("%w: its statement does not decode", ErrInvalid)
	case st.DecidedAt == nil:
		return fmt.Errorf("%w: its statement has no decided_at", ErrInvalid)
	case st.Index >= b.Index:
		return fmt.Errorf("%w: decided at index %d, not before the batch (index %d)", ErrInvalid, st.Index, b.Index)
	}
	t := st.DecidedAt.AsTime()
	if t.Before(b.Time.Add(-MaxDecisionAge)) || t.After(b.Time.Add(MaxDecisionLead)) {
		return fmt.Errorf("%w: decided at %s, logged at %s: outside [-%s, +%s]", ErrInvalid, t.UTC().Format(time.RFC3339Nano), b.Time.UTC().Format(time.RFC3339Nano), MaxDecisionAge, MaxDecisionLead)
	}
	r := b.States[st.Index]
	if r == nil {
		return fmt.Errorf("%w (index %d)", ErrStateNotKept, st.Index)
	}
	if rederive {
		if err := Recheck(r, st); err != nil {
			return fmt.Errorf("%w: on this node's state at index %d: %w", ErrRederive, st.Index, err)
		}
	}
	if b.LastWrite == 0 || b.LastWrite > st.Index {
		if err := Recheck(b.Before, st); err != nil {
			return fmt.Errorf("%w (index %d): %w", ErrStale, b.Index-1, err)
		}
	}
	return nil
}
