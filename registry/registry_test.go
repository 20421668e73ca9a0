package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/consensus"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every method registered on the server has an entry in the authorisation
// table; a method without one would be denied to everyone (default deny),
// which is safe but surely a mistake.
func TestEveryMethodHasAPolicy(t *testing.T) {
	gs := grpc.NewServer()
	(&Server{}).Register(gs)
	n := 0
	for svc, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			full := fmt.Sprintf("/%s/%s", svc, m.Name)
			require.NotEmpty(t, accessPolicy[full].roles, "%s has no entry in accessPolicy", full)
			n++
		}
	}
	require.Equal(t, len(accessPolicy), n, "accessPolicy names a method that is not registered")
}

func TestAuthorizeDefaultDeny(t *testing.T) {
	require.NoError(t, authorize(trustfedv1.AdminService_ApproveOrganization_FullMethodName, Principal{Role: RoleAdmin}))
	require.ErrorIs(t, authorize(trustfedv1.AdminService_ApproveOrganization_FullMethodName, Principal{Role: RoleNode}), ErrPermissionDenied)
	require.ErrorIs(t, authorize(peerv1.PeerService_ReadIndex_FullMethodName, Principal{Role: RoleAdmin}), ErrPermissionDenied)
	require.ErrorIs(t, authorize("/trustfed.v1.AdminService/Unlisted", Principal{Role: RoleAdmin}), ErrPermissionDenied)
}

// Writes are exactly the methods not marked NO_SIDE_EFFECTS: they are the
// ones a follower forwards to the leader.
func TestWriteMethods(t *testing.T) {
	want := map[string]bool{
		trustfedv1.AdminService_ApproveOrganization_FullMethodName:       true,
		trustfedv1.AdminService_UpdateOrganization_FullMethodName:        true,
		trustfedv1.AdminService_ProposeAdminChange_FullMethodName:        true,
		trustfedv1.AdminService_ApproveAdminChange_FullMethodName:        true,
		trustfedv1.AdminService_ImportAgreements_FullMethodName:          true,
		trustfedv1.MembershipService_RegisterOrganization_FullMethodName: true,
		trustfedv1.MembershipService_SubmitPassport_FullMethodName:       true,
		trustfedv1.MembershipService_ProposeAgreement_FullMethodName:     true,
		trustfedv1.MembershipService_SignAgreement_FullMethodName:        true,
		trustfedv1.MembershipService_TerminateAgreement_FullMethodName:   true,
		trustfedv1.MembershipService_ApproveAuthorization_FullMethodName: true,
		trustfedv1.MembershipService_SetWebhook_FullMethodName:           true,
		trustfedv1.RegistryService_RequestAuthorization_FullMethodName:   true,
		trustfedv1.AuditService_AddCosignature_FullMethodName:            true,
		peerv1.PeerService_AppendAudit_FullMethodName:                    true,
		peerv1.PeerService_AppendAuditStream_FullMethodName:              true,
		peerv1.PeerService_ReportDivergence_FullMethodName:               true,
		trustfedv1.ClusterService_Join_FullMethodName:                    true,
		trustfedv1.CascadeService_OpenSession_FullMethodName:             true,
		trustfedv1.CascadeService_HeartbeatSession_FullMethodName:        true,
		trustfedv1.CascadeService_CloseSession_FullMethodName:            true,
		trustfedv1.CascadeService_AckEvent_FullMethodName:                true,
		trustfedv1.ClusterService_Leave_FullMethodName:                   true,
		trustfedv1.ClusterService_TransferLeadership_FullMethodName:      true,
		trustfedv1.AccessService_CreateToken_FullMethodName:              true,
		trustfedv1.AccessService_RevokeToken_FullMethodName:              true,
		trustfedv1.AccessService_EnrolMemberNode_FullMethodName:          true,
		trustfedv1.AccessService_RemoveMemberNode_FullMethodName:         true,
		trustfedv1.AccessService_IssueMemberCertificate_FullMethodName:   true,
	}
	require.Equal(t, want, writeMethods)
	for m := range accessPolicy {
		_, err := newResponse(m)
		require.NoError(t, err, m)
	}
}

func TestToStatus(t *testing.T) {
	cases := []struct {
		err   error
		code  codes.Code
		field string
	}{
		{state.Invalid("declared_level", "out of range"), codes.InvalidArgument, "declared_level"},
		{fmt.Errorf("wrapped: %w", state.NotFound("organization_id", "nope")), codes.NotFound, "organization_id"},
		{state.AlreadyExists("name", "taken"), codes.AlreadyExists, "name"},
		{state.FailedPrecondition("status", "revoked"), codes.FailedPrecondition, "status"},
		{fmt.Errorf("apply: %w", consensus.ErrNotLeader), codes.Unavailable, ""},
		{fmt.Errorf("apply: %w", consensus.ErrUnknownOutcome), codes.Unavailable, ""},
		{ErrUnauthenticated, codes.Unauthenticated, ""},
		{ErrPermissionDenied, codes.PermissionDenied, ""},
		{context.DeadlineExceeded, codes.DeadlineExceeded, ""},
		{errors.New("boom"), codes.Internal, ""},
	}
	for _, tc := range cases {
		st := status.Convert(toStatus(slog.New(slog.DiscardHandler), "/m", tc.err))
		require.Equal(t, tc.code, st.Code(), "%v", tc.err)
		if tc.field != "" {
			require.Contains(t, st.Message(), tc.field)
			if tc.code == codes.InvalidArgument {
				require.Len(t, st.Details(), 1)
				br := st.Details()[0].(*errdetails.BadRequest)
				require.Equal(t, tc.field, br.FieldViolations[0].Field)
			}
		}
	}
	require.NotContains(t, status.Convert(toStatus(slog.New(slog.DiscardHandler), "/m", errors.New("secret internals"))).Message(), "secret")
}

func TestPageTokens(t *testing.T) {
	after, err := decodePageToken(encodePageToken("acme-bank"))
	require.NoError(t, err)
	require.Equal(t, "acme-bank", after)
	for _, tok := range []string{"!!not-base64", "garbage", "YWNtZS1iYW5r" /* "acme-bank", no tag */} {
		_, err = decodePageToken(tok)
		require.ErrorIs(t, err, state.ErrInvalidArgument, tok)
	}
	require.Equal(t, defaultPageSize, pageSize(0))
	require.Equal(t, maxPageSize, pageSize(1_000_000))
}

func TestRequestIDValidation(t *testing.T) {
	id, err := requestID("")
	require.NoError(t, err)
	require.Len(t, id, 32)
	_, err = requestID("has space")
	require.ErrorIs(t, err, state.ErrInvalidArgument)
	require.Equal(t, agreementID("r1"), agreementID("r1"), "a retried request derives the same agreement id")
	require.NoError(t, state.ValidateAgreementID("agreement_id", agreementID("r1")))
}
