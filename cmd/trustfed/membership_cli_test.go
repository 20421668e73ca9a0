package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestCLIMembershipUsageErrors(t *testing.T) {
	dir := t.TempDir()
	_, key := testKey(t, dir, "acme.key")
	passport := filepath.Join(dir, "acme.jwt")
	require.NoError(t, os.WriteFile(passport, []byte("a.b.c\n"), 0o644))
	reg := []string{"org", "register", "--id", "acme", "--name", "Acme", "--jurisdiction", "EU", "--org-key", key, "--passport", passport}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"org create is gone", []string{"org", "create", "acme"}, "unknown command"},
		{"agreement create is gone", []string{"agreement", "create", "acme", "globex"}, "unknown command"},
		{"register without level", reg, `"level" not set`},
		{"register bad level", append(reg, "--level", "9"), "out of range"},
		{"register bad jurisdiction", append(reg[:6:6], "--jurisdiction", "E U", "--level", "1", "--org-key", key, "--passport", passport), "jurisdiction"},
		{"register http endpoint", append(reg, "--level", "1", "--endpoint", "http://acme.example"), "https"},
		{"register bad id", []string{"org", "register", "--id", "Acme", "--name", "A", "--jurisdiction", "EU", "--level", "1", "--org-key", key, "--passport", passport}, "not a valid organisation id"},
		{"approve without id", []string{"org", "approve"}, "expects 1 argument"},
		{"override without reason", []string{"org", "override-onboarding", "acme"}, `"reason" not set`},
		{"override blank reason", []string{"org", "override-onboarding", "acme", "--reason", " "}, "--reason is empty"},
		{"suspend bad id", []string{"org", "suspend", "A", "--reason", "x"}, "not a valid organisation id"},
		{"passport without key", []string{"org", "passport", "acme", "--passport", passport}, `[org-key key]`},
		{"propose without actions", []string{"agreement", "propose", "acme", "globex", "--valid", "1d"}, `"actions" not set`},
		{"propose without end", []string{"agreement", "propose", "acme", "globex", "--actions", "ping"}, "not-after"},
		{"propose with both ends", []string{"agreement", "propose", "acme", "globex", "--actions", "ping", "--valid", "1d", "--not-after", "2030-01-01T00:00:00Z"}, "not-after"},
		{"propose with self", []string{"agreement", "propose", "acme", "acme", "--actions", "ping", "--valid", "1d"}, "two different"},
		{"propose bad valid", []string{"agreement", "propose", "acme", "globex", "--actions", "ping", "--valid", "1y"}, "--valid"},
		{"sign bad id", []string{"agreement", "sign", "agr-1", "--org", "acme", "--org-key", key}, "not valid"},
		{"sign without org", []string{"agreement", "sign", "agr-0123456789abcdef", "--org-key", key}, `"org" not set`},
		{"terminate without reason", []string{"agreement", "terminate", "agr-0123456789abcdef", "--org", "acme", "--org-key", key}, `"reason" not set`},
		{"get bad id", []string{"agreement", "get", "x"}, "not valid"},
		{"policy set nothing", []string{"federation", "policy", "set"}, "nothing to change"},
		{"policy set bad cap", []string{"federation", "policy", "set", "--onboarding-cap", "7"}, "out of range"},
		{"policy set bad period", []string{"federation", "policy", "set", "--onboarding-period", "a month"}, "--onboarding-period"},
		{"accredit without max level", []string{"issuer", "accredit", "eu", "--name", "EU", "--pubkey", key + ".pub"}, `"max-level" not set`},
		{"accredit bad id", []string{"issuer", "accredit", "EU", "--name", "EU", "--pubkey", key + ".pub", "--max-level", "4"}, "issuer id"},
		{"withdraw blank reason", []string{"issuer", "withdraw", "eu-assessors", "--reason", ""}, "--reason is empty"},
		{"revoke bad serial", []string{"passport", "revoke", "a b", "--reason", "r"}, "serial"},
		{"revoke without reason", []string{"passport", "revoke", "s1"}, `"reason" not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(nil, tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Empty(t, stdout)
			require.True(t, strings.HasPrefix(stderr, "error: "), stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}

// proposeFault answers Unavailable to the first ProposeAgreement (a leader
// lost mid-call, which a real server cannot be made to do on cue) and
// records every attempt. The rest of the membership verbs run against a
// real server: TestCLIMembershipAgainstRealServer.
type proposeFault struct {
	trustfedv1.UnimplementedMembershipServiceServer

	mu        sync.Mutex
	proposals []*trustfedv1.ProposeAgreementRequest
}

func (f *proposeFault) ProposeAgreement(_ context.Context, req *trustfedv1.ProposeAgreementRequest) (*trustfedv1.ProposeAgreementResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proposals = append(f.proposals, req)
	if len(f.proposals) == 1 {
		return nil, status.Error(codes.Unavailable, "leader lost")
	}
	return &trustfedv1.ProposeAgreementResponse{Agreement: &trustfedv1.Agreement{
		Id: "agr-0123456789abcdef", OrganizationAId: req.GetOrganizationAId(), OrganizationBId: req.GetOrganizationBId(),
		Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING,
	}}, nil
}

// A proposal retried after Unavailable sends the same request: the same
// request id and the same terms, not_before included.
func TestCLIProposeRetriesSameRequest(t *testing.T) {
	fake := &proposeFault{}
	addr, caFile := serveFake(t, func(srv *grpc.Server) { trustfedv1.RegisterMembershipServiceServer(srv, fake) })
	env := map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": caFile, "TRUSTFED_TOKEN": "tf_env_token"}
	code, stdout, stderr := runCLI(env, "agreement", "propose", "acme", "globex", "--actions", "task_send,ping",
		"--data-categories", "payments", "--valid", "365d", "--min-level", "2")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, squeeze(stdout), "ID: agr-0123456789abcdef\n")
	require.Contains(t, squeeze(stdout), "Status: PENDING\n")
	fake.mu.Lock()
	defer fake.mu.Unlock()
	p := fake.proposals
	require.Len(t, p, 2)
	require.NotEmpty(t, p[0].GetRequestId())
	require.True(t, proto.Equal(p[0], p[1]), "the retry sends the same request, not_before included")
	require.NotNil(t, p[0].GetNotBefore())
	require.Zero(t, p[0].GetNotBefore().GetNanos())
	require.WithinDuration(t, time.Now(), p[0].GetNotBefore().AsTime(), time.Minute)
	require.Equal(t, 365*day, p[0].GetNotAfter().AsTime().Sub(p[0].GetNotBefore().AsTime()))
	require.Equal(t, uint32(2), p[0].GetTermination().GetMinLevel())
	require.True(t, p[0].GetTermination().GetOnPassportExpiry())
}

// squeeze collapses runs of spaces, so that assertions on tables do not
// depend on column widths.
func squeeze(s string) string {
	return spaces.ReplaceAllString(s, " ")
}

var spaces = regexp.MustCompile(` {2,}`)

// The organisation's key is --org-key on every verb that signs for an
// organisation; --key still works there, deprecated, and says so.
func TestOrgKeyFlagEverywhere(t *testing.T) {
	root := newRootCmd(&app{getenv: func(string) string { return "" }})
	for _, path := range [][]string{
		{"org", "register"}, {"org", "passport"}, {"org", "set-webhook"},
		{"agreement", "sign"}, {"agreement", "terminate"}, {"authorization", "approve"}, {"audit", "witness"},
	} {
		cmd, _, err := root.Find(path)
		require.NoError(t, err, "%v", path)
		require.NotNil(t, cmd.Flags().Lookup("org-key"), "%v has --org-key", path)
		old := cmd.Flags().Lookup("key")
		require.NotNil(t, old, "%v keeps --key as an alias", path)
		require.NotEmpty(t, old.Deprecated, "%v: --key is deprecated", path)
	}
	_, _, err := root.Find([]string{"member", "enrol"})
	require.NoError(t, err)
}
