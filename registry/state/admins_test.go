package state

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// twoAdminFederation has admins alice and bob and a quorum of two.
func twoAdminFederation(t *testing.T) *harness {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 4, 4)
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	h.mustChange(bob.Enrol())
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{AdminApprovalsRequired: u32(2)}))
	require.EqualValues(t, 2, h.read().AdminApprovalsRequired())
	return h
}

func (h *harness) approve(id string, by testutil.Admin) Result {
	rec, ok := h.read().AdminChange(id)
	require.True(h.t, ok, id)
	return h.apply(&commandv1.ApproveAdminChange{ChangeId: id, Approval: by.Approve(rec.Change)}, "")
}

// TestTC5AdminChangeNeedsTwoAdmins: a sensitive admin mutation (raising a
// level) waits for a second, distinct admin; the same admin twice, a key
// that is not an admin's and an approval after the change was applied are
// refused.
func TestTC5AdminChangeNeedsTwoAdmins(t *testing.T) {
	h := twoAdminFederation(t)
	h.mustChange(testutil.SetLevel("acme-bank", 3))
	require.EqualValues(t, 4, h.level("acme-bank"), "one approval of two changes nothing")

	pending, _ := h.read().AdminChanges("", 10, true, h.now)
	require.Len(t, pending, 1)
	rec := pending[0]
	require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING, rec.Status)
	require.EqualValues(t, 2, rec.ApprovalsRequired)

	res := h.approve(rec.Id, alice)
	require.ErrorIs(t, res.Err, ErrAlreadyExists, "the same admin cannot approve twice")
	res = h.approve(rec.Id, carol)
	require.ErrorIs(t, res.Err, ErrPermissionDenied, "carol is not an admin")
	require.EqualValues(t, 4, h.level("acme-bank"))

	require.NoError(t, h.approve(rec.Id, bob).Err)
	require.EqualValues(t, 3, h.level("acme-bank"))
	got, _ := h.read().AdminChange(rec.Id)
	require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED, got.Status)
	require.Len(t, got.Approvals, 2)
	require.Equal(t, []string{"alice", "bob"}, []string{got.Approvals[0].AdminId, got.Approvals[1].AdminId})
	require.Equal(t, h.index, got.ApplyIndex)

	res = h.approve(rec.Id, carol)
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "an applied change takes no more approvals")
}

func TestAdminChangeExpires(t *testing.T) {
	h := twoAdminFederation(t)
	h.mustChange(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	pending, _ := h.read().AdminChanges("", 10, true, h.now)
	require.Len(t, pending, 1)
	h.now = h.now.Add(time.Hour) // testutil.ChangeBytes: one hour to live
	require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_EXPIRED, ChangeStatus(pending[0], h.now))
	res := h.approve(pending[0].Id, bob)
	require.ErrorIs(t, res.Err, ErrFailedPrecondition)
	o, _ := h.read().Organization("acme-bank")
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, o.Status)
	still, _ := h.read().AdminChanges("", 10, true, h.now)
	require.Empty(t, still, "an expired change is not pending")
}

// A removed admin's approval stops counting, also on changes that were
// waiting when the admin was removed.
func TestRemovedAdminApprovalStopsCounting(t *testing.T) {
	h := twoAdminFederation(t)
	// Enrol carol (alice + bob), then propose a level change with alice.
	h.mustChange(carol.Enrol())
	enrol, _ := h.read().AdminChanges("", 10, true, h.now)
	require.Len(t, enrol, 1)
	require.NoError(t, h.approve(enrol[0].Id, bob).Err)
	h.mustChange(testutil.SetLevel("acme-bank", 1))
	pending, _ := h.read().AdminChanges("", 10, true, h.now)
	require.Len(t, pending, 1)

	// bob and carol remove alice.
	raw := testutil.ChangeBytes(t, testutil.RemoveAdmin(alice.ID), h.now)
	require.NoError(t, h.apply(&commandv1.ProposeAdminChange{Change: raw, Approval: bob.Approve(raw)}, "").Err)
	require.NoError(t, h.apply(&commandv1.ApproveAdminChange{ChangeId: AdminChangeID(raw), Approval: carol.Approve(raw)}, "").Err)
	a, _ := h.read().Admin(alice.ID)
	require.Equal(t, trustfedv1.AdminStatus_ADMIN_STATUS_REMOVED, a.Status)

	// carol's approval makes two approvals, but alice's no longer counts.
	require.NoError(t, h.approve(pending[0].Id, carol).Err)
	require.EqualValues(t, 4, h.level("acme-bank"))
	require.ErrorIs(t, h.approve(pending[0].Id, alice).Err, ErrPermissionDenied)
	require.NoError(t, h.approve(pending[0].Id, bob).Err)
	require.EqualValues(t, 1, h.level("acme-bank"))
}

// Without a bootstrap admin, the first admin approves their own enrolment;
// while admins are fewer than the quorum, enrolment needs all of them, and
// any other change is refused until the quorum can be met.
func TestFirstAdminsEnrol(t *testing.T) {
	h := newHarness(t)
	raw := testutil.ChangeBytes(t, alice.Enrol(), h.now)
	require.ErrorIs(t, h.apply(&commandv1.ProposeAdminChange{Change: raw, Approval: bob.Approve(raw)}, "").Err, ErrPermissionDenied,
		"the first admin's enrolment is approved by that admin's own key")
	require.NoError(t, h.apply(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)}, "").Err)
	require.EqualValues(t, 1, h.read().ActiveAdmins())

	res := h.apply(h.proposal(testutil.Accredit(h.fed.Issuer()), alice), "")
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "the default quorum of 2 cannot be met by one admin")

	require.NoError(t, h.apply(h.proposal(bob.Enrol(), alice), "").Err, "one admin enrols the second")
	require.EqualValues(t, 2, h.read().ActiveAdmins())
	require.NoError(t, h.apply(h.proposal(testutil.Accredit(h.fed.Issuer()), alice), "").Err)
	_, ok := h.read().Issuer(h.fed.IssuerID)
	require.False(t, ok, "two admins now needed")
}

// A proposal is bound to its bytes: a signature over other bytes, or a
// replay of an applied change, does nothing.
func TestAdminApprovalBoundToBytes(t *testing.T) {
	h := twoAdminFederation(t)
	raw := testutil.ChangeBytes(t, testutil.SetLevel("acme-bank", 2), h.now)
	other := testutil.ChangeBytes(t, testutil.SetLevel("acme-bank", 2), h.now) // same change, other nonce
	require.NotEqual(t, AdminChangeID(raw), AdminChangeID(other))
	require.NoError(t, h.apply(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)}, "").Err)
	res := h.apply(&commandv1.ApproveAdminChange{ChangeId: AdminChangeID(raw), Approval: bob.Approve(other)}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument)
	require.EqualValues(t, 4, h.level("acme-bank"))
	res = h.apply(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)}, "")
	require.ErrorIs(t, res.Err, ErrAlreadyExists, "the same bytes cannot be proposed twice")
}
