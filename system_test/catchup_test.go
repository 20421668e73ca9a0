package system_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// readyz is one GET /readyz: its status code and reason (0, "" when the
// server does not answer).
func readyz(hc *http.Client, httpAddr string) (int, string) {
	resp, err := hc.Get("https://" + httpAddr + "/readyz")
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var body struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Reason
}

// A follower restarted with a long log has not applied it until the leader
// tells it what is committed. Until then it must answer UNAVAILABLE
// (retryable), never "unknown token" for a valid one, and /readyz says 503;
// once it has caught up, /readyz says 200 and the token works.
func TestRestartedNodeAnswersUnavailableUntilCaughtUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t, "-rate-writes", "0") // the test writes a long log fast
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	follower := all[0]
	if follower == leader {
		follower = all[1]
	}
	admin := c.clients[leader]

	// A long log: many tokens, then the one the test presents, last.
	const tokens, writers = 1500, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := w; i < tokens; i += writers {
				if _, err := admin.Access().CreateToken(ctxT(t), &trustfedv1.CreateTokenRequest{
					Role: trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, Description: fmt.Sprintf("filler %d", i), Ttl: nil}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	last, err := admin.Access().CreateToken(ctxT(t), &trustfedv1.CreateTokenRequest{
		Role: trustfedv1.TokenRole_TOKEN_ROLE_ADMIN, Description: "the token the test presents"})
	require.NoError(t, err)
	caller := dial(t, c.servers[follower], c.pki.CAFile, last.Secret)
	testutil.Eventually(t, 30*time.Second, "the follower knows the last token", func() error {
		_, err := caller.Registry().ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{})
		return err
	})

	c.servers[follower].Kill()
	c.restart(t, follower)
	hc := httpsClient(t, c.pki.CAFile)
	var unavailable, notReady int
	testutil.Eventually(t, 60*time.Second, "the restarted follower is ready and serves the token", func() error {
		code, reason := readyz(hc, c.servers[follower].Addrs.HTTPAddr)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := caller.Registry().ListOrganizations(ctx, &trustfedv1.ListOrganizationsRequest{})
		switch status.Code(err) {
		case codes.OK:
		case codes.Unavailable:
			unavailable++
		case codes.DeadlineExceeded:
		default:
			return testutil.Permanent(fmt.Errorf("a valid token was answered %v: %w", status.Code(err), err))
		}
		if code == http.StatusServiceUnavailable {
			notReady++
			t.Logf("readyz 503: %s", reason)
		}
		if code != http.StatusOK || err != nil {
			return fmt.Errorf("readyz %d, call: %v", code, err)
		}
		return nil
	})
	t.Logf("before catching up: %d calls answered UNAVAILABLE, %d readyz 503", unavailable, notReady)
	require.Positive(t, notReady, "the restarted node was seen not ready before it caught up")
	require.Positive(t, unavailable, "the restarted node was seen answering UNAVAILABLE before it caught up")

	st, err := caller.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	require.True(t, st.CaughtUp)
	require.Empty(t, st.NotReady)
}
