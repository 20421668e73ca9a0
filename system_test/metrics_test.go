package system_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// scrape GETs /metrics over HTTPS with token; it returns the status, on
// 200 the parsed exposition, and the body.
func (d *devServer) scrape(t *testing.T, token string) (int, testutil.Metrics, string) {
	t.Helper()
	return scrape(t, d.http, d.base, token)
}

func scrape(t *testing.T, hc *http.Client, base, token string) (int, testutil.Metrics, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxT(t), http.MethodGet, base+"/metrics", nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil, string(body)
	}
	return resp.StatusCode, testutil.ParseMetrics(t, strings.NewReader(string(body))), string(body)
}

// metricValue is the value of a sample (0 when absent: a counter not yet
// incremented has no series).
func metricValue(m testutil.Metrics, name string, labels map[string]string) float64 {
	v, _ := m.Value(name, labels)
	return v
}

// A running server's GET /metrics, over HTTPS: a monitor token reads it
// and nothing else (the API refuses it), other roles and no token are
// refused and audited; the numbers follow what the node did: each answered
// check by decision and reason, gRPC calls by method and code, Raft state,
// audit batches.
func TestMetricsOverHTTPS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "bank-a", 4, "bank-b", 2, []string{"task_send"})
	d, c, member := p.d, p.admin, p.member

	tokenOf := func(role string) string {
		code, body := d.do(t, "POST", "/v1/tokens", d.token, map[string]any{"role": role, "description": "metrics test " + role, "ttl": "3600s"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		return body["secret"].(string)
	}
	monitor, regulator := tokenOf("TOKEN_ROLE_MONITOR"), tokenOf("TOKEN_ROLE_REGULATOR")
	code, body := d.do(t, "POST", "/v1/tokens", d.token, map[string]any{"role": "TOKEN_ROLE_MONITOR", "organization_id": "bank-a", "description": "scoped", "ttl": "3600s"})
	require.Equal(t, http.StatusBadRequest, code, "a monitor token is federation-wide: %v", body)
	require.Contains(t, body["message"], "organization_id:")

	t.Run("only monitor and admin tokens read it", func(t *testing.T) {
		code, _, text := d.scrape(t, "")
		require.Equal(t, http.StatusUnauthorized, code, text)
		code, _, text = d.scrape(t, regulator)
		require.Equal(t, http.StatusForbidden, code, text)
		require.Contains(t, text, "role regulator may not read metrics")
		code, _, text = d.scrape(t, d.token)
		require.Equal(t, http.StatusOK, code, text)
		// The refusals are audited like refused API calls.
		testutil.Eventually(t, 30*time.Second, "the refused scrapes are audited", func() error {
			afs, err := authFailures(t, c)
			if err != nil {
				return err
			}
			n := 0
			for _, af := range afs {
				if af.Method == "GET /metrics" {
					n++
				}
			}
			if n != 2 {
				return fmt.Errorf("%d AUTH_FAILURE entries for GET /metrics, want 2", n)
			}
			return nil
		})
	})

	t.Run("a monitor token calls no API method", func(t *testing.T) {
		mon := dial(t, d.srv, d.caFile, monitor)
		_, err := mon.Registry().ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
		code, body := d.do(t, "GET", "/v1/organizations", monitor, nil)
		require.Equal(t, http.StatusForbidden, code, "%v", body)
		// Public methods stay public.
		_, err = mon.Keys(ctxT(t))
		require.NoError(t, err)
	})

	t.Run("numbers follow the node's work", func(t *testing.T) {
		code, before, text := d.scrape(t, monitor)
		require.Equal(t, http.StatusOK, code, text)
		at := metricValue
		const allowed, denied = 5, 3
		var denyReason string
		for i := range allowed + denied {
			action := "task_send"
			if i >= allowed {
				action = "ping" // not in the agreement's scope
			}
			resp, err := member.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: action})
			require.NoError(t, err)
			if i >= allowed {
				require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision)
				denyReason = resp.Reasons[0].Code
			} else {
				require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, "%v", resp.Reasons)
			}
		}
		code, after, text := d.scrape(t, monitor)
		require.Equal(t, http.StatusOK, code, text)
		delta := func(name string, labels map[string]string) float64 {
			return at(after, name, labels) - at(before, name, labels)
		}
		require.Equal(t, float64(allowed), delta("trustfed_decisions_total", map[string]string{"decision": "allow", "reason": ""}))
		require.Equal(t, float64(denied), delta("trustfed_decisions_total", map[string]string{"decision": "deny", "reason": denyReason}))
		require.Equal(t, float64(allowed+denied), delta("grpc_server_handled_total",
			map[string]string{"grpc_service": "trustfed.v1.RegistryService", "grpc_method": "CheckInteraction", "grpc_code": "OK"}))
		require.Equal(t, float64(allowed+denied), delta("grpc_server_handling_seconds", map[string]string{"grpc_method": "CheckInteraction"}))
		require.GreaterOrEqual(t, delta("trustfed_audit_batch_events", nil), 1.0, "the decisions were committed in audit batches")
		require.GreaterOrEqual(t, delta("trustfed_audit_log_entries", nil), float64(allowed+denied))
		require.Equal(t, 1.0, at(after, "trustfed_raft_state", map[string]string{"state": "Leader"}))
		require.Equal(t, 0.0, at(after, "trustfed_raft_state", map[string]string{"state": "Follower"}))
		require.Equal(t, 1.0, at(after, "trustfed_raft_ready_leader", nil))
		require.Equal(t, at(after, "trustfed_raft_commit_index", nil), at(after, "trustfed_raft_applied_index", nil), "an idle node has applied all it committed")
		require.Equal(t, 0.0, at(after, "trustfed_audit_fault", nil))
		require.Greater(t, at(after, "process_resident_memory_bytes", nil), 0.0)
		// Raft's own measurements: each audit batch was a Raft commit,
		// written to the log store.
		require.GreaterOrEqual(t, delta("hashicorp_raft_commitTime", nil), 1.0)
		require.GreaterOrEqual(t, delta("hashicorp_raft_boltdb_storeLogs", nil), 1.0)
	})
}
