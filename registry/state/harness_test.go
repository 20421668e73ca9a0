package state

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// harness drives a real FSM with real signatures; time moves only through
// the commands it applies (h.now), never the clock.
type harness struct {
	t     testing.TB
	fsm   *FSM
	fed   *testutil.Federation
	index uint64
	now   time.Time
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, fsm: NewFSM(NewStore(), attestation.Verifier{}, nil), fed: testutil.NewFederation(t), now: t0}
}

func (h *harness) apply(cmd proto.Message, requestID string) Result {
	h.t.Helper()
	b, err := Encode(cmd, EnvelopeMeta{RequestID: requestID, Time: h.now, Principal: "token:test"})
	require.NoError(h.t, err)
	return h.applyRaw(b)
}

func (h *harness) must(cmd proto.Message) {
	h.t.Helper()
	require.NoError(h.t, h.apply(cmd, "").Err)
}

func (h *harness) applyRaw(b []byte) Result {
	h.index++
	return h.fsm.Apply(h.index, b).(Result)
}

func (h *harness) read() *Reader { return h.fsm.Store().Read() }

func (h *harness) snapshotBytes() []byte {
	h.t.Helper()
	snap, err := h.fsm.Snapshot()
	require.NoError(h.t, err)
	defer snap.Release()
	var buf bytes.Buffer
	require.NoError(h.t, snap.Persist(&buf))
	return buf.Bytes()
}

// alice is the harness federation's first admin; the harness enrols her
// with a quorum of one, so a change she proposes applies at once.
var alice, bob, carol = testutil.NewAdmin("alice"), testutil.NewAdmin("bob"), testutil.NewAdmin("carol")

func (h *harness) ensureAdmin() {
	h.t.Helper()
	if len(h.read().Admins()) == 0 {
		h.must(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: alice.ID, Name: "Alice", PublicKey: alice.Public()}, ApprovalsRequired: 1})
	}
}

// change proposes an admin change approved by alice.
func (h *harness) change(c *trustfedv1.AdminChange) Result {
	h.t.Helper()
	h.ensureAdmin()
	raw := testutil.ChangeBytes(h.t, c, h.now)
	return h.apply(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)}, "")
}

// proposal is a ProposeAdminChange of c signed by signer.
func (h *harness) proposal(c *trustfedv1.AdminChange, signer testutil.Admin) *commandv1.ProposeAdminChange {
	raw := testutil.ChangeBytes(h.t, c, h.now)
	return &commandv1.ProposeAdminChange{Change: raw, Approval: signer.Approve(raw)}
}

func (h *harness) mustChange(c *trustfedv1.AdminChange) {
	h.t.Helper()
	require.NoError(h.t, h.change(c).Err)
}

func (h *harness) accredit() { h.mustChange(testutil.Accredit(h.fed.Issuer())) }

func (h *harness) register(org string, declared, attested uint32, mutate ...func(*trustfedv1.Registration)) Result {
	reg, sig := h.fed.Registration(org, declared, attested, h.now, mutate...)
	return h.apply(&commandv1.RegisterOrganization{Registration: reg, Signature: sig}, "")
}

// member registers and approves org.
func (h *harness) member(org string, declared, attested uint32) {
	h.t.Helper()
	require.NoError(h.t, h.register(org, declared, attested).Err)
	h.must(&commandv1.ApproveOrganization{OrganizationId: org})
}

func (h *harness) terms(id, a, b string, minLevel uint32, actions ...string) []byte {
	return termsBytes(h.now, id, a, b, minLevel, actions...)
}

// termsBytes serializes agreement terms valid for two years from now.
func termsBytes(now time.Time, id, a, b string, minLevel uint32, actions ...string) []byte {
	if len(actions) == 0 {
		actions = []string{"ping", "task_send", "context_share"}
	}
	t := &trustfedv1.AgreementTerms{
		AgreementId: id, OrganizationAId: a, OrganizationBId: b,
		Scope:     &trustfedv1.AgreementScope{AllowedActions: actions},
		NotBefore: timestamppb.New(now), NotAfter: timestamppb.New(now.Add(2 * 365 * 24 * time.Hour)),
		Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, MinLevel: minLevel, OnPassportExpiry: true},
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	if err != nil {
		panic(err) // a constant message: cannot fail
	}
	return out
}

// agreement proposes an agreement and has both parties sign it.
func (h *harness) agreement(id, a, b string, minLevel uint32) {
	h.t.Helper()
	terms := h.terms(id, a, b, minLevel)
	h.must(&commandv1.ProposeAgreement{Terms: terms})
	h.must(&commandv1.SignAgreement{AgreementId: id, OrganizationId: a, Signature: h.fed.SignTerms(a, terms)})
	h.must(&commandv1.SignAgreement{AgreementId: id, OrganizationId: b, Signature: h.fed.SignTerms(b, terms)})
}

func (h *harness) level(org string) uint32 {
	h.t.Helper()
	r := h.read()
	o, ok := r.Organization(org)
	require.True(h.t, ok, org)
	return r.OrganizationLevel(o, h.now).Level
}

func (h *harness) agreementStatus(id string) trustfedv1.AgreementStatus {
	ag, ok := h.read().Agreement(id)
	require.True(h.t, ok, id)
	return ag.Status
}

func u32(v uint32) *uint32 { return &v }

// stripIndex drops the snapshot header (which holds the applied index) so two
// snapshots can be compared by content.
func stripIndex(t *testing.T, snap []byte) []byte {
	t.Helper()
	var hdr commandv1.SnapshotHeader
	n := int(snap[0]) // header records are short: one-byte length prefix
	require.NoError(t, proto.Unmarshal(snap[1:1+n], &hdr))
	return snap[1+n:]
}
