package state

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TC5: an authorisation is granted only by one approval from each party;
// the same party twice, a third organisation, another purpose's signature
// and an approval after expiry are refused.
func TestTC5DualAuthorization(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("bank-a", 4, 4)
	h.member("bank-b", 2, 2)
	h.member("bank-c", 2, 2)
	st := &trustfedv1.AuthorizationStatement{AuthorizationId: "auth-0000000000000001", FromOrganizationId: "bank-a", ToOrganizationId: "bank-b",
		Action: "task_send", Value: 600_000, ExpireTime: timestamppb.New(h.now.Add(5 * time.Minute))}
	b, err := proto.Marshal(st)
	require.NoError(t, err)
	h.must(&commandv1.CreateAuthorization{Statement: b})
	approve := func(org string, sig []byte) Result {
		return h.apply(&commandv1.ApproveAuthorization{AuthorizationId: st.AuthorizationId, OrganizationId: org, Signature: sig}, "")
	}
	status := func() trustfedv1.AuthorizationStatus {
		a, _ := h.read().Authorization(st.AuthorizationId)
		return a.Status
	}

	require.ErrorIs(t, approve("bank-c", h.fed.SignAuthorization("bank-c", b)).Err, ErrInvalidArgument, "a third organisation")
	require.ErrorIs(t, approve("bank-a", h.fed.SignTerms("bank-a", b)).Err, ErrInvalidArgument, "a signature for another purpose")
	require.ErrorIs(t, approve("bank-a", h.fed.SignAuthorization("bank-b", b)).Err, ErrInvalidArgument, "another party's key")
	require.NoError(t, approve("bank-a", h.fed.SignAuthorization("bank-a", b)).Err)
	require.Equal(t, trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_PENDING, status(), "one approval is not enough")
	require.ErrorIs(t, approve("bank-a", h.fed.SignAuthorization("bank-a", b)).Err, ErrAlreadyExists, "the same party twice")
	require.Equal(t, trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_PENDING, status())

	late := *h
	late.now = h.now.Add(5 * time.Minute)
	require.ErrorIs(t, late.apply(&commandv1.ApproveAuthorization{AuthorizationId: st.AuthorizationId, OrganizationId: "bank-b", Signature: h.fed.SignAuthorization("bank-b", b)}, "").Err,
		ErrFailedPrecondition, "an expired request")
	h.index = late.index

	require.NoError(t, approve("bank-b", h.fed.SignAuthorization("bank-b", b)).Err)
	require.Equal(t, trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_GRANTED, status())

	a, _ := h.read().Authorization(st.AuthorizationId)
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "task_send", Value: 600_000}
	require.Empty(t, AuthorizationCovers(a, req, h.now))
	require.Contains(t, AuthorizationCovers(a, req, h.now.Add(5*time.Minute)), "expired")
	other := proto.CloneOf(req)
	other.Value = 700_000
	require.Contains(t, AuthorizationCovers(a, other, h.now), "another interaction")
}

// Every replica refuses an authorisation for more uses than the bound.
func TestAuthorizationMaxUsesBound(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("bank-a", 4, 4)
	h.member("bank-b", 2, 2)
	st := &trustfedv1.AuthorizationStatement{AuthorizationId: "auth-0000000000000002", FromOrganizationId: "bank-a", ToOrganizationId: "bank-b",
		Action: "task_send", Value: 600_000, ExpireTime: timestamppb.New(h.now.Add(5 * time.Minute)), MaxUses: MaxAuthorizationUses + 1}
	b, err := proto.Marshal(st)
	require.NoError(t, err)
	res := h.apply(&commandv1.CreateAuthorization{Statement: b}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument)
	require.Contains(t, res.Err.Error(), "max_uses: 1001 is more than 1000 uses")
	st.MaxUses = MaxAuthorizationUses
	b, err = proto.Marshal(st)
	require.NoError(t, err)
	h.must(&commandv1.CreateAuthorization{Statement: b})
	a, _ := h.read().Authorization(st.AuthorizationId)
	require.EqualValues(t, MaxAuthorizationUses, a.UsesRemaining)
}
