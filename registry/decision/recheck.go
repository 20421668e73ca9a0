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
	switch {
	case st == nil:
		return fmt.Errorf("its statement does not decode")
	case st.DecidedAt == nil:
		return fmt.Errorf("its statement has no decided_at")
	case st.Index >= b.Index:
		return fmt.Errorf("decided at index %d, not before the batch (index %d)", st.Index, b.Index)
	}
	t := st.DecidedAt.AsTime()
	if t.Before(b.Time.Add(-MaxDecisionAge)) || t.After(b.Time.Add(MaxDecisionLead)) {
		return fmt.Errorf("decided at %s, logged at %s: outside [-%s, +%s]", t.UTC().Format(time.RFC3339Nano), b.Time.UTC().Format(time.RFC3339Nano), MaxDecisionAge, MaxDecisionLead)
	}
	r := b.States[st.Index]
	if r == nil {
		return fmt.Errorf("the state at index %d is no longer kept here", st.Index)
	}
	if err := Recheck(r, st); err != nil {
		return fmt.Errorf("%w: on this node's state at index %d: %w", ErrRederive, st.Index, err)
	}
	if b.LastWrite == 0 || b.LastWrite > st.Index {
		if err := Recheck(b.Before, st); err != nil {
			return fmt.Errorf("%w: no longer holds on the state before the batch (index %d): %w", ErrRederive, b.Index-1, err)
		}
	}
	return nil
}
