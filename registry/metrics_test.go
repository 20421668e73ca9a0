package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// token stores a token of role (scoped to org) and returns its secret.
func (r *memberRig) token(name string, role commandv1.Role, org string) string {
	r.t.Helper()
	id, secret, err := attestation.NewToken(strings.NewReader(strings.Repeat(name, 64)))
	require.NoError(r.t, err)
	hash := attestation.TokenHash(secret)
	r.must(&commandv1.PutToken{Token: &commandv1.Token{Id: id, SecretSha256: hash[:], Role: role, OrganizationId: org,
		Description: name, ExpireTime: timestamppb.New(r.time().Add(time.Hour))}})
	return secret
}

// GET /metrics answers a monitor or admin token only: 401 with a Bearer
// challenge without a usable token, 403 for other roles, and counts both.
// What it serves counts this node's decisions, refusals and Raft state.
func TestMetricsEndpoint(t *testing.T) {
	r := newMemberRig(t, false)
	monitor := r.token("m", commandv1.Role_ROLE_MONITOR, "")
	admin := r.token("a", commandv1.Role_ROLE_ADMIN, "")
	governance := r.token("g", commandv1.Role_ROLE_GOVERNANCE, "acme")
	hs := httptest.NewServer(r.s.MetricsHandler())
	t.Cleanup(hs.Close)

	get := func(header string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, hs.URL+"/metrics", nil)
		require.NoError(t, err)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := hs.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}

	resp, body := get("")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	require.Equal(t, `Bearer realm="trustfed"`, resp.Header.Get("WWW-Authenticate"))
	resp, body = get("Bearer not-a-token")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, body)
	require.Contains(t, body, "malformed token")
	resp, body = get("Bearer " + governance)
	require.Equal(t, http.StatusForbidden, resp.StatusCode, body)
	require.Contains(t, body, "role governance may not read metrics")

	// Two checks, one denied for want of an agreement, one refused input.
	ctx := context.Background()
	dec, err := r.registry.CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "task_send"})
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, dec.Decision)
	_, err = r.registry.CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "acme", Action: "task_send"})
	require.Error(t, err)

	for _, tok := range []string{monitor, admin} {
		resp, body = get("Bearer " + tok)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		require.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
	}
	m := testutil.ParseMetrics(t, strings.NewReader(body))
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := m.Value(name, labels)
		require.True(t, ok, "no %s%v in\n%s", name, labels, body)
		return v
	}
	require.Equal(t, 3.0, value("trustfed_metrics_scrapes_refused_total", nil))
	require.Equal(t, 2.0, value("trustfed_auth_failures_total", map[string]string{"code": "Unauthenticated"}))
	require.Equal(t, 1.0, value("trustfed_auth_failures_total", map[string]string{"code": "PermissionDenied"}))
	require.Equal(t, 1.0, value("trustfed_decisions_total", map[string]string{"decision": "deny", "reason": "NO_AGREEMENT"}))
	for l := range uint32(5) {
		want := 0.0
		if l == dec.EffectiveLevel {
			want = 1
		}
		require.Equal(t, want, value("trustfed_decisions_by_level_total", map[string]string{"level": fmt.Sprint(l)}), "level %d", l)
	}
	_, ok := m.Value("trustfed_decisions_total", map[string]string{"decision": "allow"})
	require.False(t, ok, "no check was allowed")
	// directRaft reports an empty status: a node in no Raft state.
	require.Equal(t, 0.0, value("trustfed_raft_state", map[string]string{"state": "Leader"}))
	require.Equal(t, 0.0, value("trustfed_cascades_incomplete", nil))
	require.Equal(t, 0.0, value("trustfed_audit_fault", nil))
	require.Greater(t, value("go_goroutines", nil), 0.0)
}
