package decision_test

import (
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/state"
)

// The caps on each party's level are part of the signed statement: an
// answer whose caps differ from the signed ones is refused.
func TestDecisionStatementSignsLevelCaps(t *testing.T) {
	h := buildFederation(t)
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}
	resp := h.signed(h.fsm.Store().Read(), req, 0)
	require.NotEmpty(t, resp.FromLevelCaps)
	require.NotEmpty(t, resp.ToLevelCaps)
	keys := attestation.DecisionKeys{h.keyID: {KeyId: h.keyID, PublicKey: h.key.Public().(ed25519.PublicKey)}}
	st, err := attestation.VerifyDecisionWith(resp, keys, h.now, attestation.VerifyOptions{AllowSingleNode: true})
	require.NoError(t, err)
	require.Len(t, st.FromLevelCaps, len(resp.FromLevelCaps))
	require.True(t, proto.Equal(st.ToLevelCaps[0], resp.ToLevelCaps[0]))

	for name, forge := range map[string]func(*trustfedv1.CheckInteractionResponse){
		"from cap level":  func(r *trustfedv1.CheckInteractionResponse) { r.FromLevelCaps[0].Level = 4 },
		"to cap source":   func(r *trustfedv1.CheckInteractionResponse) { r.ToLevelCaps[0].Source = "passport" },
		"from cap detail": func(r *trustfedv1.CheckInteractionResponse) { r.FromLevelCaps[0].Detail = "assessed on site" },
		"a cap removed":   func(r *trustfedv1.CheckInteractionResponse) { r.ToLevelCaps = r.ToLevelCaps[1:] },
		"a cap added": func(r *trustfedv1.CheckInteractionResponse) {
			r.FromLevelCaps = append(r.FromLevelCaps, &trustfedv1.LevelCap{Source: state.CapOnboarding, Level: 2})
		},
	} {
		forged := proto.CloneOf(resp)
		forge(forged)
		_, err := attestation.VerifyDecisionWith(forged, keys, h.now, attestation.VerifyOptions{AllowSingleNode: true})
		require.ErrorIs(t, err, attestation.ErrDecisionMismatch, "an answer whose %s differs from the signed statement", name)
	}

	// A statement signed before the caps were: it still verifies.
	var old trustfedv1.DecisionStatement
	require.NoError(t, proto.Unmarshal(resp.Statement, &old))
	old.FromLevelCaps, old.ToLevelCaps = nil, nil
	legacy := proto.CloneOf(resp)
	legacy.Statement, legacy.Signature, err = attestation.SignDecision(h.key, &old)
	require.NoError(t, err)
	_, err = attestation.VerifyDecisionWith(legacy, keys, h.now, attestation.VerifyOptions{AllowSingleNode: true})
	require.NoError(t, err)
}

// Replay re-derives the caps of each party's level and flags a statement
// whose signed caps differ; statements without caps (signed before they
// were) replay clean.
func TestReplayFindsAForgedLevelCap(t *testing.T) {
	h := buildFederation(t)
	recs := h.records()
	clean := append([]*trustfedv1.AuditRecord(nil), recs...)
	forged := -1
	for i, rec := range recs {
		var st trustfedv1.DecisionStatement
		if rec.Entry.Type != state.AuditDecision || proto.Unmarshal(rec.Entry.Decision.Statement, &st) != nil {
			continue
		}
		require.NotEmpty(t, st.FromLevelCaps, "entry %d", rec.Sequence)
		old := proto.CloneOf(&st)
		old.FromLevelCaps, old.ToLevelCaps = nil, nil
		clean[i] = withStatement(t, rec, old)
		if forged < 0 {
			st.ToLevelCaps[0].Level++
			recs[i] = withStatement(t, rec, &st)
			forged = i
		}
	}
	require.GreaterOrEqual(t, forged, 0)
	rep, err := decision.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Len(t, rep.Mismatches, 1)
	require.Equal(t, recs[forged].Sequence, rep.Mismatches[0].Sequence)
	require.Contains(t, rep.Mismatches[0].Problem, "caps on globex's level")

	rep, err = decision.Replay(testutil.Records(clean), nil)
	require.NoError(t, err)
	require.Empty(t, rep.Mismatches, "statements signed without caps")
}

// grant opens an authorisation of acme's task_send of value 5000 to globex
// for maxUses uses and has both approve it; it returns the check
// presenting it.
func (h *replayHarness) grant(id string, maxUses uint32) *trustfedv1.CheckInteractionRequest {
	h.t.Helper()
	st := &trustfedv1.AuthorizationStatement{AuthorizationId: id, FromOrganizationId: "acme", ToOrganizationId: "globex",
		Action: "task_send", Value: 5000, ExpireTime: timestamppb.New(h.now.Add(5 * time.Minute)), MaxUses: maxUses}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	require.NoError(h.t, err)
	h.must(&commandv1.CreateAuthorization{Statement: b})
	for _, org := range []string{"acme", "globex"} {
		h.must(&commandv1.ApproveAuthorization{AuthorizationId: id, OrganizationId: org, Signature: h.fed.SignAuthorization(org, b)})
	}
	return &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "task_send", Value: 5000, AuthorizationId: id}
}

// consume takes a use of the authorisation req presents, as CheckInteraction
// does before it answers ALLOW; it returns the use's index.
func (h *replayHarness) consume(req *trustfedv1.CheckInteractionRequest) uint64 {
	h.t.Helper()
	check := proto.CloneOf(req)
	check.AuthorizationId = ""
	h.must(&commandv1.ConsumeAuthorization{AuthorizationId: req.AuthorizationId, Check: check})
	return h.index
}

// A single-use authorisation backs one ALLOW; replay re-derives both
// decisions, and flags an ALLOW that took no use or claims a use another
// decision held.
func TestReplayChecksAuthorizationUses(t *testing.T) {
	h := federationHarness(t)
	req := h.grant("auth-00000000000000a1", 1)
	a, _ := h.fsm.Store().Read().Authorization(req.AuthorizationId)
	require.EqualValues(t, 1, a.UsesRemaining)

	use := h.consume(req)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, h.decideUse(h.fsm.Store().Read(), req, use))
	a, _ = h.fsm.Store().Read().Authorization(req.AuthorizationId)
	require.Zero(t, a.UsesRemaining)
	require.Equal(t, []uint64{use}, a.UseIndexes)
	second := h.signed(h.fsm.Store().Read(), req, 0)
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, second.Decision)
	require.Contains(t, second.Reasons[0].Message, "dual authorisation: authorization auth-00000000000000a1 has already been used (1 of 1 uses)")
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, h.check("acme", "globex", "task_send", func(r *trustfedv1.CheckInteractionRequest) { proto.Merge(r, req) }))
	res := h.apply(&commandv1.ConsumeAuthorization{AuthorizationId: req.AuthorizationId, Check: &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "task_send", Value: 5000}})
	require.ErrorIs(t, res.Err, state.ErrFailedPrecondition, "no use left")
	require.Contains(t, res.Err.Error(), "has already been used")

	// A grant of two uses, the first taken by a server that took none (as
	// before uses were counted).
	twice := h.grant("auth-00000000000000a2", 2)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, h.decide(h.fsm.Store().Read(), twice))

	recs := h.records()
	var denied, unused int
	for i, rec := range recs {
		var st trustfedv1.DecisionStatement
		if rec.Entry.Type == state.AuditDecision && proto.Unmarshal(rec.Entry.Decision.Statement, &st) == nil {
			switch {
			case st.PresentedAuthorizationId == req.AuthorizationId && st.Decision == trustfedv1.Decision_DECISION_DENY:
				denied = i
			case st.PresentedAuthorizationId == twice.AuthorizationId:
				unused = i
			}
		}
	}
	require.NotZero(t, denied)
	require.NotZero(t, unused)
	rep, err := decision.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Len(t, rep.Mismatches, 1)
	require.Equal(t, recs[unused].Sequence, rep.Mismatches[0].Sequence)
	require.Contains(t, rep.Mismatches[0].Problem, "relied on authorization auth-00000000000000a2, whose uses are counted, without taking one")

	recs = recs[:unused]
	rep, err = decision.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Empty(t, rep.Mismatches, "the single use, its ALLOW and the DENY after it")

	// The DENY turned into a second ALLOW holding the same use.
	var st trustfedv1.DecisionStatement
	require.NoError(t, proto.Unmarshal(recs[denied].Entry.Decision.Statement, &st))
	st.Decision, st.Reasons, st.AuthorizationId, st.AuthorizationUseIndex = trustfedv1.Decision_DECISION_ALLOW, nil, req.AuthorizationId, use
	recs[denied] = withStatement(t, recs[denied], &st)
	rep, err = decision.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Len(t, rep.Mismatches, 1)
	require.Contains(t, rep.Mismatches[0].Problem, fmt.Sprintf("the use of authorization %s taken at index %d was already held by the decision in entry", req.AuthorizationId, use))

	// Or holding none.
	st.AuthorizationUseIndex = 0
	recs[denied] = withStatement(t, recs[denied], &st)
	rep, err = decision.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Len(t, rep.Mismatches, 1)
	require.Contains(t, rep.Mismatches[0].Problem, "decision ALLOW, replayed DENY")
}
