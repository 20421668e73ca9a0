package decision_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
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
	require.ErrorIs(t, decision.Vouch(b, b.Statements[0]), decision.ErrRederive)

	// Decided before globex's suspension, logged after it.
	stale := h.statement(ping)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, stale.Decision)
	h.change(testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	b = h.logStatements(stale)
	require.ErrorContains(t, decision.Vouch(b, b.Statements[0]), "no longer holds on the state before the batch")
	require.ErrorIs(t, decision.Vouch(b, b.Statements[0]), decision.ErrStale)

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
		require.ErrorIs(t, decision.Vouch(b, b.Statements[0]), decision.ErrInvalid, name)
	}
	require.ErrorIs(t, decision.Vouch(b, nil), decision.ErrInvalid, "a statement that does not decode")
	for _, err := range []error{decision.ErrRederive, decision.ErrStale, decision.ErrInvalid} {
		require.True(t, decision.Deterministic(fmt.Errorf("wrapped: %w", err)), "%v", err)
	}
	require.False(t, decision.Deterministic(decision.ErrStateNotKept), "node-local")
}

// A replica's own decision is not evaluated again at its index (VouchOwn):
// its own evaluation made it there. Every other check still holds: one a
// later write overtook is refused as stale, and one outside the batch's
// time window or index as invalid.
func TestVouchOwnSkipsOnlyTheRederivationAtItsIndex(t *testing.T) {
	h := federationHarness(t)
	ping := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}

	honest := h.statement(ping)
	b := h.logStatements(honest)
	require.NoError(t, decision.VouchOwn(b, b.Statements[0]))

	// What only the re-derivation catches (a statement this replica did
	// not make this way) is the one thing VouchOwn does not look at, which
	// is why it is given only the replica's own statements.
	forged := h.statement(&trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "agent_spawn"})
	forged.Decision, forged.Reasons, forged.EffectiveLevel = trustfedv1.Decision_DECISION_ALLOW, nil, 4
	b = h.logStatements(forged)
	require.ErrorIs(t, decision.Vouch(b, b.Statements[0]), decision.ErrRederive)
	require.NoError(t, decision.VouchOwn(b, b.Statements[0]))

	stale := h.statement(ping)
	h.change(testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	b = h.logStatements(stale)
	require.ErrorIs(t, decision.VouchOwn(b, b.Statements[0]), decision.ErrStale, "a write overtook it")

	st := h.statement(ping)
	st.Index = 1 << 40
	b = h.logStatements(st)
	require.ErrorIs(t, decision.VouchOwn(b, b.Statements[0]), decision.ErrInvalid)
	back := h.statement(ping)
	back.DecidedAt = timestamppb.New(back.DecidedAt.AsTime().Add(-time.Minute))
	b = h.logStatements(back)
	require.ErrorIs(t, decision.VouchOwn(b, b.Statements[0]), decision.ErrInvalid)
}

// A batch in which a level change overtook one decision (Scenario C under
// a write load): each honest replica refuses exactly that leaf and vouches
// for the others, and replicas that applied the same log sign the same
// head bytes, which list the refused leaf.
func TestVouchBatchRefusesOnlyTheStaleDecision(t *testing.T) {
	h := federationHarness(t)
	ping := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}
	stale := h.statement(ping)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, stale.Decision)
	h.change(testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	fresh := h.statement(ping)
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, fresh.Decision, "decided on the new state")
	b := h.logStatements(fresh, stale, fresh)

	v, err := decision.VouchBatch(b, nil)
	require.NoError(t, err)
	require.Equal(t, []uint64{1}, v.Refused)
	require.ErrorIs(t, v.Reasons[1], decision.ErrStale)
	require.True(t, v.Vouched(0))
	require.False(t, v.Vouched(1))
	require.True(t, v.Vouched(2))
	head, root, err := v.Head("test", b)
	require.NoError(t, err)
	var hd trustfedv1.DecisionBatchHead
	require.NoError(t, proto.Unmarshal(head, &hd))
	require.Equal(t, []uint64{1}, hd.Refused)
	require.Equal(t, uint64(3), hd.Size)
	require.Equal(t, b.Index, hd.LogIndex)
	require.Equal(t, root, hd.Root)

	batches := h.replica()
	require.NotEmpty(t, batches)
	ob := batches[len(batches)-1]
	require.Equal(t, b.Index, ob.Index)
	ov, err := decision.VouchBatch(ob, nil)
	require.NoError(t, err)
	otherHead, _, err := ov.Head("test", ob)
	require.NoError(t, err)
	require.Equal(t, head, otherHead, "another honest replica signs the same head bytes")
}

// A decision refused for a node-local reason (the state it needs is no
// longer kept here) is not a verdict other replicas share: the replica
// vouches for nothing in the batch.
func TestVouchBatchRefusesTheWholeBatchForANodeLocalReason(t *testing.T) {
	h := federationHarness(t)
	ping := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}
	b := h.logStatements(h.statement(ping), h.statement(ping))
	v, err := decision.VouchBatch(b, nil)
	require.NoError(t, err)
	require.Empty(t, v.Refused)
	for idx := range b.States {
		b.States[idx] = nil
	}
	_, err = decision.VouchBatch(b, nil)
	require.ErrorIs(t, err, decision.ErrStateNotKept)
}

// replica applies every command h applied to a fresh replica (its own FSM
// and audit log) and returns the decision batches it hands its cosigner.
func (h *replayHarness) replica() []state.DecisionBatch {
	h.t.Helper()
	l, err := audit.Open(filepath.Join(h.t.TempDir(), "audit.db"))
	require.NoError(h.t, err)
	h.t.Cleanup(func() { _ = l.Close() })
	fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
	require.NoError(h.t, fsm.AttachAudit(registry.AuditLog{Log: l}))
	var got []state.DecisionBatch
	fsm.OnDecisionBatch(func(b state.DecisionBatch) { got = append(got, b) })
	for i, e := range h.entries {
		_ = fsm.Apply(uint64(i+1), e)
		fsm.EndBatch()
	}
	return got
}
