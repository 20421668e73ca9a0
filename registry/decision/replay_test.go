package decision_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"strings"
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

// replayHarness drives a real FSM with a real audit log attached, the way a
// registry node does, and logs decisions the way CheckInteraction does.
type replayHarness struct {
	t     testing.TB
	fsm   *state.FSM
	log   *audit.Log
	fed   *testutil.Federation
	index uint64
	now   time.Time
	key   ed25519.PrivateKey
	keyID string
	// entries are the commands applied, in order (entries[i] at index i+1).
	entries [][]byte
}

var alice = testutil.NewAdmin("alice")

func newReplayHarness(t testing.TB) *replayHarness {
	l, err := audit.Open(filepath.Join(t.TempDir(), "audit.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
	require.NoError(t, fsm.AttachAudit(registry.AuditLog{Log: l}))
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &replayHarness{t: t, fsm: fsm, log: l, fed: testutil.NewFederation(t),
		now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), key: key, keyID: attestation.Fingerprint(pub)}
}

func (h *replayHarness) apply(cmd proto.Message) state.Result {
	h.t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: h.now, Principal: "token:test"})
	require.NoError(h.t, err)
	h.index++
	h.entries = append(h.entries, b)
	res := h.fsm.Apply(h.index, b).(state.Result)
	h.fsm.EndBatch()
	h.now = h.now.Add(time.Second)
	return res
}

func (h *replayHarness) must(cmd proto.Message) {
	h.t.Helper()
	require.NoError(h.t, h.apply(cmd).Err)
}

func (h *replayHarness) change(c *trustfedv1.AdminChange) {
	h.t.Helper()
	raw := testutil.ChangeBytes(h.t, c, h.now)
	h.must(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)})
}

func (h *replayHarness) member(org string, mutate ...func(*trustfedv1.Registration)) {
	h.t.Helper()
	reg, sig := h.fed.Registration(org, 3, 3, h.now, mutate...)
	h.must(&commandv1.RegisterOrganization{Registration: reg, Signature: sig})
	h.must(&commandv1.ApproveOrganization{OrganizationId: org})
}

func (h *replayHarness) agreement(id, a, b string) {
	h.t.Helper()
	terms, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.AgreementTerms{
		AgreementId: id, OrganizationAId: a, OrganizationBId: b,
		Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"ping", "task_send", "context_share"}},
		NotBefore: timestamppb.New(h.now), NotAfter: timestamppb.New(h.now.Add(365 * 24 * time.Hour)),
		Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true},
	})
	require.NoError(h.t, err)
	h.must(&commandv1.ProposeAgreement{Terms: terms})
	h.must(&commandv1.SignAgreement{AgreementId: id, OrganizationId: a, Signature: h.fed.SignTerms(a, terms)})
	h.must(&commandv1.SignAgreement{AgreementId: id, OrganizationId: b, Signature: h.fed.SignTerms(b, terms)})
}

// decide evaluates a check on r (the state a node read) and logs the
// signed decision with an APPEND_AUDIT command, as CheckInteraction does.
func (h *replayHarness) decide(r *state.Reader, req *trustfedv1.CheckInteractionRequest) trustfedv1.Decision {
	h.t.Helper()
	return h.decideUse(r, req, 0)
}

// decideUse is decide for a check holding the use of its authorisation
// taken at index use.
func (h *replayHarness) decideUse(r *state.Reader, req *trustfedv1.CheckInteractionRequest, use uint64) trustfedv1.Decision {
	h.t.Helper()
	resp := h.signed(r, req, use)
	h.must(&commandv1.AppendAudit{Events: []*commandv1.AuditEvent{{
		Event:     &commandv1.AuditEvent_Decision{Decision: &trustfedv1.AuditDecision{Statement: resp.Statement, Signature: resp.Signature, KeyId: h.keyID, NodeId: "n1"}},
		Principal: "org:" + req.FromOrganizationId,
	}}})
	return resp.Decision
}

// signed is the answer CheckInteraction gives for req on r: evaluated and
// signed with the harness's registry key.
func (h *replayHarness) signed(r *state.Reader, req *trustfedv1.CheckInteractionRequest, use uint64) *trustfedv1.CheckInteractionResponse {
	h.t.Helper()
	resp, err := decision.Evaluate(r, req, h.now, use)
	require.NoError(h.t, err)
	resp.AuthorizationUseIndex = use
	resp.Meta = &trustfedv1.ReadMeta{Index: r.Index()}
	resp.DecidedAt, resp.ValidUntil = timestamppb.New(h.now), timestamppb.New(h.now.Add(r.FreshnessWindow()))
	resp.KeyId = h.keyID
	resp.Statement, resp.Signature, err = attestation.SignDecision(h.key, decision.NewStatement(req, resp))
	require.NoError(h.t, err)
	return resp
}

func (h *replayHarness) check(from, to, action string, opts ...func(*trustfedv1.CheckInteractionRequest)) trustfedv1.Decision {
	h.t.Helper()
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: to, Action: action}
	for _, o := range opts {
		o(req)
	}
	return h.decide(h.fsm.Store().Read(), req)
}

// records reads the whole log back as ListAuditEntries returns it.
func (h *replayHarness) records() []*trustfedv1.AuditRecord {
	h.t.Helper()
	var out []*trustfedv1.AuditRecord
	require.NoError(h.t, h.log.Range(0, h.log.Size(), func(seq uint64, leaf audit.Leaf) error {
		rec := &trustfedv1.AuditRecord{Sequence: seq, Leaf: append([]byte(nil), leaf.Data...), Entry: &trustfedv1.AuditEntry{}}
		if err := proto.Unmarshal(rec.Leaf, rec.Entry); err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	}))
	return out
}

// buildFederation makes a small federation's history: admins, an issuer,
// two members and their agreement, decisions before and after the level
// and status changes, a refused command, a decision computed on an older
// state than the newest.
func buildFederation(t *testing.T) *replayHarness {
	h := federationHarness(t)
	// Refused for the authorisation it presents, which the statement does
	// not record.
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, h.check("acme", "globex", "task_send", func(r *trustfedv1.CheckInteractionRequest) {
		r.Value, r.AuthorizationId = 5000, "auth-0000000000000001"
	}))
	before := h.fsm.Store().Read()
	h.change(testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	// Decided on the state a node read before the suspension, logged after it.
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, h.decide(before, &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"}))
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, h.check("acme", "globex", "ping"))
	return h
}

// federationHarness is the start of buildFederation: acme and globex
// (whose controls require dual authorisation above a value of 1000),
// assessed, with an agreement covering ping, task_send and context_share.
func federationHarness(t *testing.T) *replayHarness {
	h := newReplayHarness(t)
	h.must(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: alice.ID, Name: "Alice", PublicKey: alice.Public()}, ApprovalsRequired: 1})
	h.must(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: h.keyID, PrivateSeed: h.key.Seed(), CreateTime: timestamppb.New(h.now)}})
	h.change(testutil.Accredit(h.fed.Issuer()))
	h.member("acme")
	h.member("globex", func(r *trustfedv1.Registration) {
		r.ControlProfile.ActionAuthorization = &trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 1000}
	})
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, h.check("acme", "globex", "ping"))
	h.agreement("agr-0000000000000001", "acme", "globex")
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, h.check("acme", "globex", "ping"))
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, h.check("acme", "globex", "context_share"), "onboarding cap")
	h.change(testutil.OverrideOnboarding("acme", "assessed"))
	h.change(testutil.OverrideOnboarding("globex", "assessed"))
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, h.check("globex", "acme", "context_share", func(r *trustfedv1.CheckInteractionRequest) {
		r.DataTypes = []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_EMAIL}
	}))
	require.Error(t, h.apply(&commandv1.ApproveOrganization{OrganizationId: "nobody"}).Err)
	return h
}

func TestReplayRebuildsEveryDecision(t *testing.T) {
	h := buildFederation(t)
	recs := h.records()
	var seen uint64
	rep, err := decision.Replay(testutil.Records(recs), func(n uint64) { seen = n })
	require.NoError(t, err)
	require.Empty(t, rep.Mismatches)
	require.Equal(t, uint64(len(recs)), rep.Entries)
	require.Equal(t, uint64(len(recs)), seen)
	require.Equal(t, uint64(7), rep.Decisions)
	require.Equal(t, uint64(1), rep.Redacted, "the signing key command")
	require.NotZero(t, rep.LevelChanges)
	require.NotZero(t, rep.Cascades)
	require.NotZero(t, rep.Commands)

	// The refused authorisation was replayed with the id the request
	// presented, which the statement records (as it does that the decision
	// needs a granted dual authorisation).
	found := false
	for _, rec := range recs {
		var st trustfedv1.DecisionStatement
		if rec.Entry.Type == state.AuditDecision && proto.Unmarshal(rec.Entry.Decision.Statement, &st) == nil {
			for _, r := range st.Reasons {
				if strings.Contains(r.Message, "authorization auth-0000000000000001 does not exist") {
					found = true
					require.Equal(t, "auth-0000000000000001", st.PresentedAuthorizationId)
					require.Empty(t, st.AuthorizationId, "not granted: the decision did not rely on it")
					require.True(t, st.RequiresDualAuthorization)
				}
			}
		}
	}
	require.True(t, found)
}

// A statement that claims another requires_dual_authorization than the
// state gives is a mismatch.
func TestReplayChecksDualAuthorizationClaim(t *testing.T) {
	h := buildFederation(t)
	recs := h.records()
	for i, rec := range recs {
		var st trustfedv1.DecisionStatement
		if rec.Entry.Type != state.AuditDecision || proto.Unmarshal(rec.Entry.Decision.Statement, &st) != nil || !st.RequiresDualAuthorization {
			continue
		}
		st.RequiresDualAuthorization = false
		recs[i] = withStatement(t, rec, &st)
		rep, err := decision.Replay(testutil.Records(recs), nil)
		require.NoError(t, err)
		require.Len(t, rep.Mismatches, 1)
		require.Contains(t, rep.Mismatches[0].Problem, "requires dual authorisation false, replayed true")
		return
	}
	t.Fatal("no decision needing dual authorisation in the log")
}

func TestReplayFindsAForgedDecision(t *testing.T) {
	h := buildFederation(t)
	recs := h.records()
	// Turn the first DENY into an ALLOW, as a tampered log would say.
	forged := -1
	for i, rec := range recs {
		if rec.Entry.Type != state.AuditDecision {
			continue
		}
		var st trustfedv1.DecisionStatement
		require.NoError(t, proto.Unmarshal(rec.Entry.Decision.Statement, &st))
		if st.Decision != trustfedv1.Decision_DECISION_DENY {
			continue
		}
		st.Decision, st.Reasons = trustfedv1.Decision_DECISION_ALLOW, nil
		recs[i] = withStatement(t, rec, &st)
		forged = i
		break
	}
	require.GreaterOrEqual(t, forged, 0)
	rep, err := decision.Replay(testutil.Records(recs), nil)
	require.NoError(t, err)
	require.Len(t, rep.Mismatches, 1)
	m := rep.Mismatches[0]
	require.Equal(t, recs[forged].Sequence, m.Sequence)
	require.Equal(t, state.AuditDecision, m.Type)
	require.Contains(t, m.Problem, "decision ALLOW, replayed DENY")
}

func TestReplayFindsAChangedOutcome(t *testing.T) {
	h := buildFederation(t)
	recs := h.records()
	for i, rec := range recs {
		if rec.Entry.Error == "" {
			continue
		}
		e := proto.CloneOf(rec.Entry)
		e.Error = ""
		recs[i] = &trustfedv1.AuditRecord{Sequence: rec.Sequence, Entry: e}
		rep, err := decision.Replay(testutil.Records(recs), nil)
		require.NoError(t, err)
		require.Len(t, rep.Mismatches, 1)
		require.Contains(t, rep.Mismatches[0].Problem, "the log says the command applied")
		return
	}
	t.Fatal("no refused command in the log")
}

func TestReplayNeedsTheWholeLog(t *testing.T) {
	h := buildFederation(t)
	recs := h.records()
	_, err := decision.Replay(testutil.Records(append(recs[:3:3], recs[4:]...)), nil)
	require.ErrorIs(t, err, decision.ErrReplay)
	_, err = decision.Replay(testutil.Records(recs[1:]), nil)
	require.ErrorIs(t, err, decision.ErrReplay)
}

// withStatement is rec with its decision statement replaced by st (as a
// tampered log would hold it).
func withStatement(t *testing.T, rec *trustfedv1.AuditRecord, st *trustfedv1.DecisionStatement) *trustfedv1.AuditRecord {
	t.Helper()
	e := proto.CloneOf(rec.Entry)
	var err error
	e.Decision.Statement, err = proto.MarshalOptions{Deterministic: true}.Marshal(st)
	require.NoError(t, err)
	leaf, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	require.NoError(t, err)
	return &trustfedv1.AuditRecord{Sequence: rec.Sequence, Leaf: leaf, Entry: e}
}
