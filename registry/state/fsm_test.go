package state

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestApplyEveryCommand(t *testing.T) {
	h := newHarness(t)
	sum := sha256.Sum256([]byte("secret"))
	h.must(&commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{Id: "t1", SecretSha256: sum[:], Role: commandv1.Role_ROLE_ADMIN}})
	h.accredit()
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(3), OnboardingPeriod: durationpb.New(24 * time.Hour)}))
	h.member("acme-bank", 3, 4)
	h.member("st-mary", 2, 2)
	h.mustChange(testutil.OverrideOnboarding("st-mary", "pilot partner"))
	h.must(&commandv1.UpdateOrganization{OrganizationId: "st-mary", Name: "St Mary"})
	h.mustChange(testutil.SetLevel("acme-bank", 2))
	h.mustChange(bob.Enrol())
	h.mustChange(testutil.RemoveAdmin(bob.ID))
	h.agreement("agr-0000000000000001", "acme-bank", "st-mary", 0)
	renewed := h.fed.Passport("st-mary", 3, h.now, h.now.Add(time.Hour))
	h.must(&commandv1.SubmitPassport{OrganizationId: "st-mary", Passport: renewed, Signature: h.fed.SignPassport("st-mary", renewed)})
	termination, sig := h.fed.Termination("st-mary", "agr-0000000000000001", "contract ended")
	h.must(&commandv1.TerminateAgreement{Termination: termination, Signature: sig})
	h.mustChange(testutil.RevokePassport("pp-unknown-1", "lost"))
	h.mustChange(testutil.Withdraw(h.fed.IssuerID, "audit failed"))
	h.mustChange(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))

	r := h.read()
	require.EqualValues(t, h.index, r.Index())
	o, ok := r.Organization("st-mary")
	require.True(t, ok)
	require.Equal(t, "St Mary", o.Name)
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, o.Status)
	require.Equal(t, "pilot partner", o.OnboardingOverride.Reason)
	require.Contains(t, o.OnboardingOverride.Principal, "admins alice (change chg-")
	acme, _ := r.Organization("acme-bank")
	require.EqualValues(t, 2, acme.DeclaredLevel)
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED, acme.Status)
	b, ok := r.Admin(bob.ID)
	require.True(t, ok)
	require.Equal(t, trustfedv1.AdminStatus_ADMIN_STATUS_REMOVED, b.Status)
	require.Len(t, o.PassportHistory, 1, "the replaced passport stays in history")
	require.EqualValues(t, 3, o.Passport.Level)
	ag, ok := r.Agreement("agr-0000000000000001")
	require.True(t, ok)
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, ag.Status)
	require.Equal(t, "st-mary", ag.TerminatedBy)
	require.Contains(t, ag.TerminationReason, "contract ended")
	require.True(t, r.PassportRevoked("pp-unknown-1"))
	is, _ := r.Issuer(h.fed.IssuerID)
	require.Equal(t, trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN, is.Status)
	require.EqualValues(t, 3, r.FederationPolicy().OnboardingCapLevel)
	_, ok = r.TokenByHash(sum[:])
	require.True(t, ok)
}

func TestBadCommandsChangeNothing(t *testing.T) {
	sum := sha256.Sum256([]byte("secret"))
	cases := []struct {
		name  string
		cmd   func(h *harness) proto.Message
		raw   []byte
		is    error
		field string
	}{
		{name: "corrupt bytes", raw: []byte{0xff, 0xff, 0xff}, is: ErrCorruptCommand},
		{name: "unknown type", raw: mustMarshal(t, &commandv1.Envelope{Type: 999}), is: ErrInvalidArgument, field: "type"},
		{name: "retired create organization", raw: mustMarshal(t, &commandv1.Envelope{Type: 1}), is: ErrInvalidArgument, field: "type"},
		{name: "retired override command", raw: mustMarshal(t, &commandv1.Envelope{Type: 7}), is: ErrInvalidArgument, field: "type"},
		{name: "retired policy command", raw: mustMarshal(t, &commandv1.Envelope{Type: 12}), is: ErrInvalidArgument, field: "type"},
		{name: "rename unknown", cmd: func(*harness) proto.Message {
			return &commandv1.UpdateOrganization{OrganizationId: "nobody", Name: "Nobody"}
		}, is: ErrNotFound, field: "organization_id"},
		{name: "rename without name", cmd: func(*harness) proto.Message { return &commandv1.UpdateOrganization{OrganizationId: "acme-bank"} }, is: ErrInvalidArgument, field: "name"},
		{name: "set level of unknown org", cmd: func(h *harness) proto.Message { return h.proposal(testutil.SetLevel("nobody", 1), alice) },
			is: ErrNotFound, field: "change.set_declared_level.organization_id"},
		{name: "set bad level", cmd: func(h *harness) proto.Message { return h.proposal(testutil.SetLevel("acme-bank", 9), alice) },
			is: ErrInvalidArgument, field: "change.set_declared_level.level"},
		{name: "set pending org active", cmd: func(h *harness) proto.Message {
			return h.proposal(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING), alice)
		}, is: ErrInvalidArgument, field: "change.set_organization_status.status"},
		{name: "change signed by a non-admin", cmd: func(h *harness) proto.Message { return h.proposal(testutil.SetLevel("acme-bank", 1), bob) },
			is: ErrPermissionDenied, field: "approval.public_key"},
		{name: "change with a forged signature", cmd: func(h *harness) proto.Message {
			p := h.proposal(testutil.SetLevel("acme-bank", 1), bob)
			p.Approval.PublicKey = alice.Public()
			return p
		}, is: ErrInvalidArgument, field: "approval.signature"},
		{name: "change without reason", cmd: func(h *harness) proto.Message {
			raw, err := client.EncodeAdminChange(testutil.SetLevel("acme-bank", 1), h.now, time.Hour)
			require.NoError(t, err)
			return &commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)}
		}, is: ErrInvalidArgument, field: "change.reason"},
		{name: "change already expired", cmd: func(h *harness) proto.Message {
			c := testutil.SetLevel("acme-bank", 1)
			c.ExpireTime = timestamppb.New(h.now.Add(-time.Second))
			return h.proposal(c, alice)
		}, is: ErrInvalidArgument, field: "change.expire_time"},
		{name: "change living too long", cmd: func(h *harness) proto.Message {
			c := testutil.SetLevel("acme-bank", 1)
			c.ExpireTime = timestamppb.New(h.now.Add(MaxAdminChangeLifetime + time.Second))
			return h.proposal(c, alice)
		}, is: ErrInvalidArgument, field: "change.expire_time"},
		{name: "empty change", cmd: func(h *harness) proto.Message { return h.proposal(&trustfedv1.AdminChange{}, alice) },
			is: ErrInvalidArgument, field: "change"},
		{name: "quorum above the admins", cmd: func(h *harness) proto.Message {
			return h.proposal(testutil.Policy(&trustfedv1.FederationPolicyChange{AdminApprovalsRequired: u32(2)}), alice)
		}, is: ErrFailedPrecondition, field: "change.update_federation_policy.admin_approvals_required"},
		{name: "remove the last admin", cmd: func(h *harness) proto.Message { return h.proposal(testutil.RemoveAdmin(alice.ID), alice) },
			is: ErrFailedPrecondition, field: "change.remove_admin.admin_id"},
		{name: "second bootstrap admin", cmd: func(*harness) proto.Message {
			return &commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: bob.ID, Name: "Bob", PublicKey: bob.Public()}, ApprovalsRequired: 1}
		}, is: ErrFailedPrecondition, field: "admin"},
		{name: "approve twice", cmd: func(*harness) proto.Message { return &commandv1.ApproveOrganization{OrganizationId: "acme-bank"} }, is: ErrFailedPrecondition, field: "organization_id"},
		{name: "accredit twice", cmd: func(h *harness) proto.Message { return h.proposal(testutil.Accredit(h.fed.Issuer()), alice) },
			is: ErrAlreadyExists, field: "change.accredit_issuer.issuer_id"},
		{name: "withdraw unknown issuer", cmd: func(h *harness) proto.Message { return h.proposal(testutil.Withdraw("ghost", "x"), alice) },
			is: ErrNotFound, field: "change.withdraw_issuer.issuer_id"},
		{name: "policy cap out of range", cmd: func(h *harness) proto.Message {
			return h.proposal(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(7)}), alice)
		}, is: ErrInvalidArgument, field: "change.update_federation_policy.onboarding_cap_level"},
		{name: "agreement with self", cmd: func(h *harness) proto.Message {
			return &commandv1.ProposeAgreement{Terms: h.terms("agr-0000000000000002", "acme-bank", "acme-bank", 0)}
		}, is: ErrInvalidArgument, field: "organization_b_id"},
		{name: "agreement unknown party", cmd: func(h *harness) proto.Message {
			return &commandv1.ProposeAgreement{Terms: h.terms("agr-0000000000000002", "acme-bank", "ghost", 0)}
		}, is: ErrNotFound, field: "organization_b_id"},
		{name: "empty terms", cmd: func(h *harness) proto.Message {
			return &commandv1.ProposeAgreement{Terms: h.terms("agr-0000000000000002", "acme-bank", "st-mary", 0, []string{}...)[:0]}
		}, is: ErrInvalidArgument, field: "agreement_id"},
		{name: "agreement id reused", cmd: func(h *harness) proto.Message {
			return &commandv1.ProposeAgreement{Terms: h.terms("agr-0000000000000001", "acme-bank", "st-mary", 0)}
		}, is: ErrAlreadyExists, field: "agreement_id"},
		{name: "sign by a non-party", cmd: func(h *harness) proto.Message {
			return &commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "city-gov", Signature: []byte("x")}
		}, is: ErrInvalidArgument, field: "organization_id"},
		{name: "second bootstrap token", cmd: func(*harness) proto.Message {
			return &commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{Id: "t2", SecretSha256: sum[:], Role: commandv1.Role_ROLE_ADMIN}}
		}, is: ErrFailedPrecondition, field: "token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.accredit()
			h.member("acme-bank", 3, 3)
			h.member("st-mary", 2, 2)
			h.member("city-gov", 2, 2)
			h.must(&commandv1.ProposeAgreement{Terms: h.terms("agr-0000000000000001", "acme-bank", "st-mary", 0)})
			h.must(&commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{Id: "t1", SecretSha256: sum[:], Role: commandv1.Role_ROLE_ADMIN}})
			before := stripIndex(t, h.snapshotBytes())

			var res Result
			if tc.raw != nil {
				res = h.applyRaw(tc.raw)
			} else {
				res = h.apply(tc.cmd(h), "")
			}
			require.ErrorIs(t, res.Err, tc.is)
			if tc.field != "" {
				var e *Error
				require.ErrorAs(t, res.Err, &e)
				require.Equal(t, tc.field, e.Field, "%v", res.Err)
			}
			require.Equal(t, before, stripIndex(t, h.snapshotBytes()), "a refused command must not change state")
		})
	}
}

func TestRequestIDDeduplicates(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	orig := h.apply(&commandv1.UpdateOrganization{OrganizationId: "acme-bank", Name: "Acme One"}, "req-1")
	require.NoError(t, orig.Err)
	again := h.apply(&commandv1.UpdateOrganization{OrganizationId: "acme-bank", Name: "Acme One"}, "req-1")
	require.NoError(t, again.Err, "a retried request succeeds as the first did")
	require.True(t, again.Duplicate)
	require.Equal(t, orig.Index, again.Index)
	o, _ := h.read().Organization("acme-bank")
	require.Equal(t, orig.Index, o.ModifyIndex, "the retry was not applied again")

	other := h.apply(&commandv1.UpdateOrganization{OrganizationId: "acme-bank", Name: "Acme Two"}, "req-1")
	require.ErrorIs(t, other.Err, ErrInvalidArgument)
	o, _ = h.read().Organization("acme-bank")
	require.Equal(t, "Acme One", o.Name, "a reused request id with other content is not applied")

	failed := h.apply(&commandv1.ApproveOrganization{OrganizationId: "acme-bank"}, "req-2")
	require.ErrorIs(t, failed.Err, ErrFailedPrecondition)
	retried := h.apply(&commandv1.ApproveOrganization{OrganizationId: "acme-bank"}, "req-2")
	require.ErrorIs(t, retried.Err, ErrFailedPrecondition, "a retried failure fails the same way")
	require.True(t, retried.Duplicate)

	// Request ids are forgotten after RequestTTL of command time.
	h.now = h.now.Add(RequestTTL + time.Second)
	h.must(&commandv1.UpdateOrganization{OrganizationId: "acme-bank", Name: "Acme Three"})
	_, ok := first[*commandv1.AppliedRequest](h.read().txn, tableRequests, "id", "req-1")
	require.False(t, ok)
}

func TestSnapshotRestoreIdentical(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("org-a", 3, 3)
	h.member("org-b", 2, 2)
	h.agreement("agr-00000000000000aa", "org-a", "org-b", 0)
	h.openSession("org-a", "org-b", "req-session", time.Minute)
	h.mustChange(testutil.SetLevel("org-a", 2)) // a cascade (level change) to org-b
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(1)}))
	h.mustChange(testutil.RevokePassport("pp-x", "lost"))
	h.mustChange(bob.Enrol())
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{AdminApprovalsRequired: u32(2)}))
	h.mustChange(testutil.SetLevel("org-b", 1)) // pending: one of two approvals
	require.NoError(t, h.apply(&commandv1.UpdateOrganization{OrganizationId: "org-b", Name: "Org B"}, "req-x").Err)
	snap := h.snapshotBytes()

	restored := newHarness(t)
	restored.accredit() // state that Restore must replace, not merge
	require.NoError(t, restored.fsm.Restore(bytes.NewReader(snap)))
	require.Equal(t, snap, restored.snapshotBytes(), "restored state must persist to identical bytes")
	require.Equal(t, h.read().Index(), restored.read().Index())
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, restored.agreementStatus("agr-00000000000000aa"))
	require.Equal(t, h.read().Graph("org-a"), restored.read().Graph("org-a"))
	require.Len(t, restored.read().IncompleteCascades(), 1)

	// The de-duplication table survives a restore.
	restored.index = h.index
	res := restored.apply(&commandv1.UpdateOrganization{OrganizationId: "org-b", Name: "Org B"}, "req-x")
	require.True(t, res.Duplicate)

	kept := restored.snapshotBytes()
	require.Error(t, restored.fsm.Restore(bytes.NewReader(snap[:len(snap)/2])), "a truncated snapshot is refused")
	require.Equal(t, kept, restored.snapshotBytes(), "a refused restore keeps the state")
}

func TestRevokedIsPermanent(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.mustChange(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED))
	res := h.change(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE))
	require.ErrorIs(t, res.Err, ErrFailedPrecondition)
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}
