package system_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Per-decision vouching (issue 18): checks on every node race a level
// change (one of the pairs' organisations is suspended mid-way). A decision
// the change overtakes before its audit batch commits is refused by the
// signers on its own, and decided again once on the new state; every other
// decision of its batch is certified. So no check fails: not those of the
// unrelated pair (which used to share the overtaken decision's fate), and
// not those of the changed pair either. Every answer is certified.
func TestChecksRacingALevelChangeAreAllCertified(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	leader := c.leader(t, "n1", "n2", "n3")
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	for _, org := range []string{"alpha", "beta", "gamma", "delta"} {
		enrol(t, admin, c.fed, org, 3)
	}
	agree(t, admin, c.fed, "alpha", "beta", "ping")
	agree(t, admin, c.fed, "gamma", "delta", "ping")
	keys, err := admin.Keys(ctxT(t))
	require.NoError(t, err)
	callers := map[string]map[string]*client.Client{
		"alpha": c.memberClients(t, admin, "alpha"), // unrelated to the change
		"gamma": c.memberClients(t, admin, "gamma"), // its peer is suspended
	}
	pairs := map[string]string{"alpha": "beta", "gamma": "delta"}
	// Every node knows the member nodes before the race starts (a follower
	// may not have applied their enrolment yet).
	for from, byNode := range callers {
		for node, cl := range byNode {
			req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: pairs[from], Action: "ping"}
			testutil.Eventually(t, 30*time.Second, from+" checks through "+node, func() error {
				_, err := cl.Registry().CheckInteraction(ctxT(t), req)
				return err
			})
		}
	}

	var (
		done     atomic.Int64 // checks answered
		mu       sync.Mutex
		failures []string
		refused  []string     // the changed pair's checks refused twice
		denied   atomic.Int64 // gamma's checks decided after the suspension
		tick     = make(chan struct{}, 1)
	)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	var wg sync.WaitGroup
	for from, byNode := range callers {
		for node, cl := range byNode {
			for w := range 2 {
				wg.Go(func() {
					req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: pairs[from], Action: "ping"}
					for ctx.Err() == nil {
						cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
						resp, err := cl.Registry().CheckInteraction(cctx, req)
						ccancel()
						if ctx.Err() != nil {
							return
						}
						if err == nil {
							_, err = client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
						}
						switch {
						case err != nil && from == "gamma" && strings.Contains(err.Error(), "refused by the signers"):
							mu.Lock()
							refused = append(refused, err.Error())
							mu.Unlock()
						case err != nil:
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%s→%s through %s (worker %d): %v", from, pairs[from], node, w, err))
							mu.Unlock()
						case from == "gamma" && resp.Decision == trustfedv1.Decision_DECISION_DENY:
							denied.Add(1)
						}
						done.Add(1)
						select {
						case tick <- struct{}{}:
						default:
						}
					}
				})
			}
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for !cond() {
			select {
			case <-tick:
			case <-timeout:
				t.Fatalf("timed out waiting for %s (%d checks answered)", what, done.Load())
			}
		}
	}
	waitFor("checks before the change", func() bool { return done.Load() >= 100 })
	c.admins.apply(t, testutil.SetStatus("delta", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), admin)
	after := done.Load()
	waitFor("checks after the change", func() bool { return done.Load() >= after+100 && denied.Load() >= 10 })
	cancel()
	wg.Wait()
	require.Empty(t, failures, "every check is answered with a certified decision")
	hc := httpsClient(t, c.pki.CAFile)
	var redecided float64
	for _, id := range []string{"n1", "n2", "n3"} {
		_, m, _ := scrape(t, hc, "https://"+c.servers[id].Addrs.HTTPAddr, c.token)
		redecided += metricValue(m, "trustfed_decisions_redecided_total", nil)
	}
	t.Logf("%d checks; %v decided again after a write overtook them; %d of the changed pair refused twice %v", done.Load(), redecided, len(refused), refused)
}
