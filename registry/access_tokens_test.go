package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Requests the service refuses before proposing anything, each naming its
// field. (The whole path, over a running server, is in
// system_test/tokens_test.go.)
func TestTokenRequestValidation(t *testing.T) {
	ok := func() *trustfedv1.CreateTokenRequest {
		return &trustfedv1.CreateTokenRequest{Role: trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE, OrganizationId: "acme-bank", Description: "Acme governance desk"}
	}
	creates := []struct {
		name   string
		mutate func(*trustfedv1.CreateTokenRequest)
		field  string
	}{
		{"no role", func(r *trustfedv1.CreateTokenRequest) { r.Role = trustfedv1.TokenRole_TOKEN_ROLE_UNSPECIFIED }, "role"},
		{"unknown role", func(r *trustfedv1.CreateTokenRequest) { r.Role = 42 }, "role"},
		{"governance without organisation", func(r *trustfedv1.CreateTokenRequest) { r.OrganizationId = "" }, "organization_id"},
		{"bad organisation", func(r *trustfedv1.CreateTokenRequest) { r.OrganizationId = "ACME" }, "organization_id"},
		{"admin with organisation", func(r *trustfedv1.CreateTokenRequest) { r.Role = trustfedv1.TokenRole_TOKEN_ROLE_ADMIN }, "organization_id"},
		{"no description", func(r *trustfedv1.CreateTokenRequest) { r.Description = "" }, "description"},
		{"long description", func(r *trustfedv1.CreateTokenRequest) { r.Description = strings.Repeat("d", 201) }, "description"},
		{"ttl too short", func(r *trustfedv1.CreateTokenRequest) { r.Ttl = durationpb.New(59 * time.Second) }, "ttl"},
		{"ttl too long", func(r *trustfedv1.CreateTokenRequest) { r.Ttl = durationpb.New(state.MaxTokenTTL + time.Second) }, "ttl"},
		{"negative ttl", func(r *trustfedv1.CreateTokenRequest) { r.Ttl = durationpb.New(-time.Hour) }, "ttl"},
		{"bad request id", func(r *trustfedv1.CreateTokenRequest) { r.RequestId = "has space" }, "request_id"},
	}
	s := &accessService{Server: &Server{}} // nothing is proposed: a nil Raft would panic
	for _, tc := range creates {
		req := ok()
		tc.mutate(req)
		_, err := s.CreateToken(context.Background(), req)
		require.ErrorIs(t, err, state.ErrInvalidArgument, tc.name)
		requireTokenField(t, err, tc.field)
	}

	revokes := []struct {
		name  string
		req   *trustfedv1.RevokeTokenRequest
		field string
	}{
		{"no id", &trustfedv1.RevokeTokenRequest{Reason: "x"}, "token_id"},
		{"bad id", &trustfedv1.RevokeTokenRequest{TokenId: "tf_0123", Reason: "x"}, "token_id"},
		{"no reason", &trustfedv1.RevokeTokenRequest{TokenId: "0123456789ab"}, "reason"},
		{"long reason", &trustfedv1.RevokeTokenRequest{TokenId: "0123456789ab", Reason: strings.Repeat("r", 501)}, "reason"},
	}
	for _, tc := range revokes {
		_, err := s.RevokeToken(context.Background(), tc.req)
		require.ErrorIs(t, err, state.ErrInvalidArgument, tc.name)
		requireTokenField(t, err, tc.field)
	}

	lists := []struct {
		name  string
		req   *trustfedv1.ListTokensRequest
		field string
	}{
		{"bad organisation", &trustfedv1.ListTokensRequest{OrganizationId: "Not An Id"}, "organization_id"},
		{"negative page size", &trustfedv1.ListTokensRequest{PageSize: -1}, "page_size"},
		{"foreign page token", &trustfedv1.ListTokensRequest{PageToken: "!!"}, "page_token"},
	}
	for _, tc := range lists {
		_, err := s.ListTokens(context.Background(), tc.req)
		require.ErrorIs(t, err, state.ErrInvalidArgument, tc.name)
		requireTokenField(t, err, tc.field)
	}
}

func requireTokenField(t *testing.T, err error, field string) {
	t.Helper()
	var se *state.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, field, se.Field, "%v", err)
}

// Every field of TokenInfo comes from the stored token (a field added to
// one and not mapped fails here), and the roles map both ways.
func TestTokenInfo(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	info := tokenInfo(&commandv1.Token{
		Id: "0123456789ab", SecretSha256: make([]byte, 32), Role: commandv1.Role_ROLE_REGULATOR, Description: "auditor",
		CreateTime: timestamppb.New(now), CreateIndex: 7, OrganizationId: "acme-bank", ExpireTime: timestamppb.New(now.Add(time.Hour)),
		RevokeTime: timestamppb.New(now.Add(time.Minute)), RevokeReason: "done", CreatedBy: "token:000000000000",
	})
	fields := info.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		require.True(t, info.ProtoReflect().Has(fd), "TokenInfo.%s is not mapped", fd.Name())
	}
	require.Equal(t, trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, info.Role)

	// Every API role but UNSPECIFIED maps to a stored role and back.
	values := trustfedv1.TokenRole_TOKEN_ROLE_UNSPECIFIED.Descriptor().Values()
	for i := range values.Len() {
		api := trustfedv1.TokenRole(values.Get(i).Number())
		st, err := stateRole(api)
		if api == trustfedv1.TokenRole_TOKEN_ROLE_UNSPECIFIED {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err, api)
		require.Equal(t, api, apiRole(st))
	}
}
