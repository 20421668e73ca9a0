package registry_test

import (
	"crypto/ed25519"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/state"
)

// The caps on each party's level are part of the signed statement: an
// answer whose caps differ from the signed ones is refused.
func TestDecisionStatementSignsLevelCaps(t *testing.T) {
	h := buildFederation(t)
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}
	resp := h.signed(h.fsm.Store().Read(), req)
	require.NotEmpty(t, resp.FromLevelCaps)
	require.NotEmpty(t, resp.ToLevelCaps)
	keys := map[string]ed25519.PublicKey{h.keyID: h.key.Public().(ed25519.PublicKey)}
	st, err := attestation.VerifyDecision(resp, keys, h.now)
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
		_, err := attestation.VerifyDecision(forged, keys, h.now)
		require.ErrorIs(t, err, attestation.ErrDecisionMismatch, "an answer whose %s differs from the signed statement", name)
	}

	// A statement signed before the caps were: it still verifies.
	var old trustfedv1.DecisionStatement
	require.NoError(t, proto.Unmarshal(resp.Statement, &old))
	old.FromLevelCaps, old.ToLevelCaps = nil, nil
	legacy := proto.CloneOf(resp)
	legacy.Statement, legacy.Signature, err = attestation.SignDecision(h.key, &old)
	require.NoError(t, err)
	_, err = attestation.VerifyDecision(legacy, keys, h.now)
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
	rep, err := registry.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Len(t, rep.Mismatches, 1)
	require.Equal(t, recs[forged].Sequence, rep.Mismatches[0].Sequence)
	require.Contains(t, rep.Mismatches[0].Problem, "caps on globex's level")

	rep, err = registry.Replay(testutil.Records(clean), nil)
	require.NoError(t, err)
	require.Empty(t, rep.Mismatches, "statements signed without caps")
}
