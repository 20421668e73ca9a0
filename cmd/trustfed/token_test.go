package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// tokenFake is an AccessService that keeps tokens in memory and records
// the requests it receives. (The real service, end to end, is in
// system_test/tokens_test.go.)
type tokenFake struct {
	trustfedv1.UnimplementedAccessServiceServer

	now time.Time // creation time of every token

	mu      sync.Mutex
	tokens  []*trustfedv1.TokenInfo // in id order
	creates []*trustfedv1.CreateTokenRequest
	lists   []*trustfedv1.ListTokensRequest
	revokes []*trustfedv1.RevokeTokenRequest
}

func (f *tokenFake) CreateToken(_ context.Context, req *trustfedv1.CreateTokenRequest) (*trustfedv1.CreateTokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, proto.CloneOf(req))
	now := f.now
	info := &trustfedv1.TokenInfo{Id: fmt.Sprintf("%012x", len(f.tokens)+0xa0), Role: req.Role, OrganizationId: req.OrganizationId,
		Description: req.Description, CreateTime: timestamppb.New(now), ExpireTime: timestamppb.New(now.Add(req.Ttl.AsDuration())), CreatedBy: "token:000000000001"}
	f.tokens = append(f.tokens, info)
	return &trustfedv1.CreateTokenResponse{Token: info, Secret: "tf_" + info.Id + "_secretsecretsecret"}, nil
}

// ListTokens answers one token per page.
func (f *tokenFake) ListTokens(_ context.Context, req *trustfedv1.ListTokensRequest) (*trustfedv1.ListTokensResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, proto.CloneOf(req))
	var out []*trustfedv1.TokenInfo
	for _, t := range f.tokens {
		if t.Id > req.PageToken && (req.OrganizationId == "" || t.OrganizationId == req.OrganizationId) && (req.IncludeInactive || t.RevokeTime == nil) {
			out = append(out, t)
		}
	}
	if len(out) > 1 {
		return &trustfedv1.ListTokensResponse{Tokens: out[:1], NextPageToken: out[0].Id, Index: 12}, nil
	}
	return &trustfedv1.ListTokensResponse{Tokens: out, Index: 12}, nil
}

func (f *tokenFake) RevokeToken(_ context.Context, req *trustfedv1.RevokeTokenRequest) (*trustfedv1.RevokeTokenResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revokes = append(f.revokes, proto.CloneOf(req))
	for _, t := range f.tokens {
		if t.Id == req.TokenId {
			if t.RevokeTime != nil {
				return nil, status.Errorf(codes.FailedPrecondition, "token_id: token %q was already revoked", t.Id)
			}
			t.RevokeTime, t.RevokeReason = timestamppb.New(f.now.Add(time.Hour)), req.Reason
			return &trustfedv1.RevokeTokenResponse{Token: t}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "token_id: token %q does not exist", req.TokenId)
}

func startTokenFake(t *testing.T) (*tokenFake, map[string]string) {
	t.Helper()
	f := &tokenFake{now: time.Now().UTC().Truncate(time.Second)}
	addr, ca := serveFake(t, func(srv *grpc.Server) { trustfedv1.RegisterAccessServiceServer(srv, f) })
	return f, map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": ca, "TRUSTFED_TOKEN": "tf_env_token"}
}

func TestTokenCmdUsageErrors(t *testing.T) {
	f, env := startTokenFake(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no role", []string{"token", "create", "--description", "d"}, `"role" not set`},
		{"no description", []string{"token", "create", "--role", "admin"}, `"description" not set`},
		{"unknown role", []string{"token", "create", "--role", "root", "--description", "d"}, "want admin, governance, regulator or monitor"},
		{"governance without org", []string{"token", "create", "--role", "governance", "--description", "d"}, "--org is required"},
		{"admin with org", []string{"token", "create", "--role", "admin", "--org", "acme", "--description", "d"}, "must not be set for an admin token"},
		{"monitor with org", []string{"token", "create", "--role", "monitor", "--org", "acme", "--description", "d"}, "must not be set for a monitor token"},
		{"bad org", []string{"token", "create", "--role", "regulator", "--org", "Acme", "--description", "d"}, "not a valid organisation id"},
		{"blank description", []string{"token", "create", "--role", "admin", "--description", "  "}, "--description"},
		{"bad ttl", []string{"token", "create", "--role", "admin", "--description", "d", "--ttl", "soon"}, "want a number of days"},
		{"ttl too short", []string{"token", "create", "--role", "admin", "--description", "d", "--ttl", "30s"}, "out of range 1m..366d"},
		{"ttl too long", []string{"token", "create", "--role", "admin", "--description", "d", "--ttl", "367d"}, "out of range 1m..366d"},
		{"revoke without id", []string{"token", "revoke", "--reason", "x"}, "expects 1 argument"},
		{"revoke a secret", []string{"token", "revoke", "tf_0123456789ab_xyz", "--reason", "x"}, "not a token id"},
		{"revoke without reason", []string{"token", "revoke", "0123456789ab"}, `"reason" not set`},
		{"list bad org", []string{"token", "list", "--org", "ACME"}, "not a valid organisation id"},
		{"unknown subcommand", []string{"token", "rotate"}, "unknown command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(env, tc.args...)
			require.Equal(t, exitUsage, code, "stdout %q stderr %q", stdout, stderr)
			require.Contains(t, stderr, tc.want)
		})
	}
	require.Empty(t, f.creates, "nothing reaches the server")
	require.Empty(t, f.revokes)
}

func TestTokenCmdAgainstServer(t *testing.T) {
	f, env := startTokenFake(t)
	at := func(d time.Duration) string { return f.now.Add(d).Format(time.RFC3339) }

	// create: the secret once, on stdout; the reminder on stderr.
	code, stdout, stderr := runCLI(env, "token", "create", "--role", "governance", "--org", "acme-bank", "--description", "Acme governance desk", "--ttl", "90d")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stderr, "shown only once")
	out := squeeze(stdout)
	require.Contains(t, out, "Secret: tf_0000000000a0_secretsecretsecret\n")
	require.Contains(t, out, "ID: 0000000000a0\n")
	require.Contains(t, out, "Role: governance\n")
	require.Contains(t, out, "Organization: acme-bank\n")
	require.Contains(t, out, "Expires: "+at(90*24*time.Hour)+"\n")
	require.Contains(t, out, "Created: "+at(0)+" by token:000000000001\n")
	req := f.creates[0]
	require.Equal(t, trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE, req.Role)
	require.Equal(t, "acme-bank", req.OrganizationId)
	require.Equal(t, "Acme governance desk", req.Description)
	require.Equal(t, 90*24*time.Hour, req.Ttl.AsDuration())
	require.Len(t, req.RequestId, 32, "a write carries a request id (retried under the same one)")

	// -o json: TokenInfo and the secret; the default ttl is 30 days.
	code, stdout, stderr = runCLI(env, "-o", "json", "token", "create", "--role", "Regulator", "--description", "EU supervisor")
	require.Equal(t, exitOK, code, stderr)
	var created struct {
		Token struct {
			ID         string `json:"id"`
			Role       string `json:"role"`
			ExpireTime string `json:"expireTime"`
		} `json:"token"`
		Secret string `json:"secret"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &created), stdout)
	require.Equal(t, "0000000000a1", created.Token.ID)
	require.Equal(t, "TOKEN_ROLE_REGULATOR", created.Token.Role)
	require.Equal(t, "tf_0000000000a1_secretsecretsecret", created.Secret)
	require.Equal(t, 30*24*time.Hour, f.creates[1].Ttl.AsDuration())
	require.Empty(t, f.creates[1].OrganizationId)
	code, _, stderr = runCLI(env, "token", "create", "--role", "admin", "--description", "Jane Doe, operations", "--ttl", "1m")
	require.Equal(t, exitOK, code, stderr)
	f.mu.Lock()
	f.tokens[2].ExpireTime = timestamppb.New(f.now.Add(-time.Minute)) // as if created two minutes ago
	f.mu.Unlock()

	// revoke
	code, stdout, stderr = runCLI(env, "token", "revoke", "0000000000a0", "--reason", "desk closed")
	require.Equal(t, exitOK, code, stderr)
	out = squeeze(stdout)
	require.Contains(t, out, "Revoked: "+at(time.Hour)+"\n")
	require.Contains(t, out, "Revoke reason: desk closed\n")
	require.NotContains(t, out, "Secret")
	require.Equal(t, "desk closed", f.revokes[0].Reason)
	require.Len(t, f.revokes[0].RequestId, 32)
	code, _, stderr = runCLI(env, "token", "revoke", "0000000000a0", "--reason", "again")
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "already revoked (code FailedPrecondition)")

	// list: every page; usable tokens unless --all; status computed from
	// the expiry (the admin token expired a minute ago).
	code, stdout, stderr = runCLI(env, "token", "list")
	require.Equal(t, exitOK, code, stderr)
	lines := strings.Split(strings.TrimSpace(squeeze(stdout)), "\n")
	require.Equal(t, []string{
		"ID ROLE ORGANIZATION STATUS EXPIRES CREATED BY DESCRIPTION",
		"0000000000a1 regulator - active " + at(30*24*time.Hour) + " token:000000000001 EU supervisor",
		"0000000000a2 admin - expired " + at(-time.Minute) + " token:000000000001 Jane Doe, operations",
	}, lines, stdout)
	code, stdout, stderr = runCLI(env, "token", "list", "--all", "--org", "acme-bank")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, squeeze(stdout), "0000000000a0 governance acme-bank revoked "+at(90*24*time.Hour)+" token:000000000001 Acme governance desk\n")
	last := f.lists[len(f.lists)-1]
	require.True(t, last.IncludeInactive)
	require.Equal(t, "acme-bank", last.OrganizationId)

	code, stdout, stderr = runCLI(env, "-o", "json", "token", "list", "--all")
	require.Equal(t, exitOK, code, stderr)
	var listed trustfedv1.ListTokensResponse
	require.NoError(t, protojson.Unmarshal([]byte(stdout), &listed))
	require.Len(t, listed.Tokens, 3, "all pages are collected")
	require.NotContains(t, stdout, "secret")
}
