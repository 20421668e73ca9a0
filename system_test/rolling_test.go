package system_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// A rolling restart — how an upgrade goes, one server at a time (followers
// first, the leader last), each waited for before the next — keeps checks
// passing: callers on every node keep checking the whole time, a check a
// stopped or catching-up node cannot answer is retried on the next node
// (as a member gateway with several registry addresses does), and every
// check is eventually answered with a certified decision, none later than
// the bound below. docs/operations.md, Upgrades.
func TestRollingRestartKeepsChecksPassing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t, noRateLimits...)
	leader := c.leader(t, "n1", "n2", "n3")
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "clinic", 3)
	enrol(t, admin, c.fed, "lab", 3)
	agree(t, admin, c.fed, "clinic", "lab", "task_send")
	members := c.memberClients(t, admin, "clinic")
	keys, err := admin.Keys(ctxT(t))
	require.NoError(t, err)
	order := []*client.Client{members["n1"], members["n2"], members["n3"]}
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "task_send"}

	const bound = 15 * time.Second // longest a check may take, retries included
	ctx, stop := context.WithCancel(context.Background())
	var answered, retried atomic.Int64
	var worst atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for caller := range 3 {
		wg.Go(func() {
			for i := caller; ctx.Err() == nil; i++ {
				start := time.Now()
				var lastErr error
				for try := 0; ; try++ {
					if time.Since(start) > bound {
						errs <- fmt.Errorf("a check was not answered within %s: %v", bound, lastErr)
						return
					}
					cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					resp, err := order[(i+try)%3].Registry().CheckInteraction(cctx, req)
					cancel()
					if err == nil {
						if _, verr := client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime()); verr != nil {
							errs <- fmt.Errorf("an answer does not verify: %w", verr)
							return
						}
						break
					}
					lastErr = err
					retried.Add(1)
					time.Sleep(20 * time.Millisecond) // the client's backoff before it tries the next node
				}
				answered.Add(1)
				if d := int64(time.Since(start)); d > worst.Load() {
					worst.Store(d)
				}
			}
		})
	}
	waitAnswered := func(n int64) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for answered.Load() < n {
			select {
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(50 * time.Millisecond):
			}
			require.True(t, time.Now().Before(deadline), "checks stopped being answered")
		}
	}
	restartOrder := []string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		if id != leader {
			restartOrder = append(restartOrder, id)
		}
	}
	restartOrder = append(restartOrder, leader)
	for _, id := range restartOrder {
		waitAnswered(answered.Load() + 20)
		require.NoError(t, c.servers[id].Stop(), id)
		waitAnswered(answered.Load() + 20) // served by the two others meanwhile
		c.restart(t, id)
		waitServing(t, c.clients[id])
	}
	waitAnswered(answered.Load() + 20)
	stop()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("rolling restart of %v: %d checks answered, %d retries, slowest %s", restartOrder, answered.Load(), retried.Load(), time.Duration(worst.Load()))
}
