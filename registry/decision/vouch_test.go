package decision_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/state"
)

// logStatements logs statements as one APPEND_AUDIT batch through the real
// FSM and returns the batch the FSM hands to its cosigner.
func (h *replayHarness) logStatements(sts ...*trustfedv1.DecisionStatement) state.DecisionBatch {
	h.t.Helper()
	var got []state.DecisionBatch
	h.fsm.OnDecisionBatch(func(b state.DecisionBatch) { got = append(got, b) })
	defer h.fsm.OnDecisionBatch(nil)
	var evs []*commandv1.AuditEvent
	for _, st := range sts {
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
		require.NoError(h.t, err)
		evs = append(evs, &commandv1.AuditEvent{Event: &commandv1.AuditEvent_Decision{Decision: &trustfedv1.AuditDecision{Statement: raw, NodeId: "n1"}}})
	}
	h.must(&commandv1.AppendAudit{Events: evs, NodeId: "n1"})
	require.Len(h.t, got, 1, "one batch handed over")
	require.Len(h.t, got[0].Statements, len(sts))
	return got[0]
}

// statement is the statement CheckInteraction would log for req decided on
// the current state now.
func (h *replayHarness) statement(req *trustfedv1.CheckInteractionRequest) *trustfedv1.DecisionStatement {
	h.t.Helper()
	resp := h.signed(h.fsm.Store().Read(), req, 0)
	var st trustfedv1.DecisionStatement
	require.NoError(h.t, proto.Unmarshal(resp.Statement, &st))
	return &st
}

// A replica vouches for a decision only when its own state re-derives it
// (at the statement's index and time), it still holds just before the
// batch, and its time agrees with the batch's: a forged outcome, a
// decision that a later write changed, a back-dated or future one, and
// one claiming an index the batch does not follow are all refused.
func TestVouchRederivesEachDecisionOnTheReplicasState(t *testing.T) {
	h := federationHarness(t)
	ping := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}

	honest := h.statement(ping)
	b := h.logStatements(honest)
	require.NoError(t, decision.Vouch(b, b.Statements[0]), "an honest decision")
	require.NotZero(t, b.LastWrite)
	require.LessOrEqual(t, b.LastWrite, honest.Index, "no write since the decision: evaluated once")

	forged := h.statement(&trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "agent_spawn"})
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, forged.Decision)
	forged.Decision, forged.Reasons, forged.EffectiveLevel = trustfedv1.Decision_DECISION_ALLOW, nil, 4
	b = h.logStatements(forged)
	require.ErrorContains(t, decision.Vouch(b, b.Statements[0]), "on this node's state at index")

	// Decided before globex's suspension, logged after it.
	stale := h.statement(ping)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, stale.Decision)
	h.change(testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	b = h.logStatements(stale)
	require.ErrorContains(t, decision.Vouch(b, b.Statements[0]), "no longer holds on the state before the batch")

	now := h.statement(ping)
	for name, tc := range map[string]struct {
		change func(*trustfedv1.DecisionStatement)
		want   string
	}{
		"back-dated": {func(st *trustfedv1.DecisionStatement) {
			st.DecidedAt = timestamppb.New(st.DecidedAt.AsTime().Add(-time.Minute))
			st.ValidUntil = timestamppb.New(st.ValidUntil.AsTime().Add(-time.Minute))
		}, "outside"},
		"from the future": {func(st *trustfedv1.DecisionStatement) {
			st.DecidedAt = timestamppb.New(st.DecidedAt.AsTime().Add(time.Minute))
		}, "outside"},
		"an index not yet seen": {func(st *trustfedv1.DecisionStatement) { st.Index = 1 << 40 }, "not before the batch"},
	} {
		st := proto.CloneOf(now)
		tc.change(st)
		b := h.logStatements(st)
		require.ErrorContains(t, decision.Vouch(b, b.Statements[0]), tc.want, name)
	}
	require.Error(t, decision.Vouch(b, nil), "a statement that does not decode")
}
