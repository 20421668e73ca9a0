package system_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// checkRecord is one check of the cascade scenario: sent to node at call,
// answered at ret with decision (err if refused).
type checkRecord struct {
	node      string
	call, ret time.Time
	decision  trustfedv1.Decision
	err       error
}

// Scenario 5: a revocation cascade while the leader is killed and 10 % of
// the partners are down. hub has 10 partners behind webhooks, one of them
// down; members of a partner check interactions with hub on every node
// throughout. hub is revoked (two admins, through two nodes) and the leader
// killed right after the revocation is acknowledged. Every check sent after
// the acknowledgement, on any node, is denied; the new leader resumes the
// cascade; the partner that was down is retried once it is back, and every
// partner acknowledges within the 300 s deadline.
func TestFaultsRevocationCascadeWithLeaderKill(t *testing.T) {
	skipFaults(t)
	rc := newReceivers(t)
	f := startFaultCluster(t, faultOptions{extra: []string{"-webhook-ca", rc.caFile(t)}})
	leader := f.waitLeader(t, "", f.ids...)
	lc := f.cluster.clients[leader]
	keys, err := lc.Keys(ctxT(t))
	require.NoError(t, err)
	rc.set(func(rc *receivers) { rc.keys = webhookKey(t, keys) })
	accredit(t, lc, f.cluster.fed, f.cluster.admins)
	enrol(t, lc, f.cluster.fed, "hub", 3)
	var partners []string
	for i := range 10 {
		org := fmt.Sprintf("p-%d", i)
		partners = append(partners, org)
		enrol(t, lc, f.cluster.fed, org, 3, func(r *trustfedv1.Registration) { r.NotificationEndpoints = []string{rc.endpoint(org)} })
		agree(t, lc, f.cluster.fed, "hub", org, "task_send")
	}
	down := partners[len(partners)-1]
	rc.set(func(rc *receivers) { rc.down[down] = -1 })
	members := f.cluster.memberClients(t, lc, partners[0])

	// Checks p-0 → hub on random nodes, all along.
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var checks []checkRecord
	var wg sync.WaitGroup
	for i := range 3 {
		rng := rand.New(rand.NewPCG(uint64(i), 5))
		wg.Go(func() {
			for ctx.Err() == nil {
				id := f.ids[rng.IntN(len(f.ids))]
				r := checkRecord{node: id, call: time.Now()}
				cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := members[id].Registry().CheckInteraction(cctx, &trustfedv1.CheckInteractionRequest{
					FromOrganizationId: partners[0], ToOrganizationId: "hub", Action: "task_send"})
				ccancel()
				r.ret, r.err = time.Now(), err
				if err == nil {
					r.decision = resp.Decision
				}
				mu.Lock()
				checks = append(checks, r)
				mu.Unlock()
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	allowedBefore := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range checks {
			if c.err == nil && c.decision == trustfedv1.Decision_DECISION_ALLOW {
				n++
			}
		}
		return n
	}
	testutil.Eventually(t, 30*time.Second, "checks allowed before the revocation", func() error {
		if n := allowedBefore(); n < 10 {
			return fmt.Errorf("%d allowed", n)
		}
		return nil
	})

	// Revoke, kill the leader at once.
	others := f.others(leader)
	revoke := testutil.SetStatus("hub", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED)
	revoke.Reason = "key compromised"
	rec := f.cluster.admins.apply(t, revoke, f.cluster.clients[others[0]], f.cluster.clients[others[1]])
	acked := time.Now()
	end := f.fault("kill -9 leader " + leader + " after the revocation")
	f.kill(leader)
	newLeader := f.waitLeader(t, leader, others...)
	t.Logf("revoked hub at index %d; killed leader %s; new leader %s", rec.ApplyIndex, leader, newLeader)
	f.restart(t, leader)
	end()
	rc.set(func(rc *receivers) { rc.down[down] = 0 }) // the partner that was down comes back

	nc := f.cluster.clients[newLeader]
	var cas *trustfedv1.Cascade
	testutil.Eventually(t, 30*time.Second, "the cascade about hub exists", func() error {
		resp, err := nc.Cascades().ListCascades(ctxT(t), &trustfedv1.ListCascadesRequest{OrganizationId: "hub"})
		if err != nil {
			return err
		}
		if len(resp.Cascades) == 0 {
			return fmt.Errorf("no cascade yet")
		}
		cas = resp.Cascades[0]
		return nil
	})
	cas = waitCascade(t, nc, cas.Id, "every partner acknowledges", complete)
	require.Len(t, cas.Deliveries, len(partners))
	for _, d := range cas.Deliveries {
		require.NotNil(t, d.AckTime, d.OrganizationId)
		require.Less(t, d.AckTime.AsTime().Sub(cas.StartTime.AsTime()), 300*time.Second, "%s acknowledged within the deadline", d.OrganizationId)
	}
	took := cas.CompleteTime.AsTime().Sub(cas.StartTime.AsTime())
	t.Logf("cascade complete in %s (%s was down until after the leader change)", took.Round(time.Millisecond), down)

	// Every node, the restarted one too, denies.
	for _, id := range f.ids {
		testutil.Eventually(t, 30*time.Second, id+" denies checks with hub", func() error {
			resp, err := checkOn(members[id], partners[0])
			if err != nil {
				return err
			}
			if resp.Decision != trustfedv1.Decision_DECISION_DENY {
				return testutil.Permanent(fmt.Errorf("%s allowed a check with revoked hub", id))
			}
			return nil
		})
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	after, allowedAfter := 0, 0
	for _, c := range checks {
		if c.err != nil || !c.call.After(acked) {
			continue
		}
		after++
		if c.decision != trustfedv1.Decision_DECISION_DENY {
			allowedAfter++
			t.Errorf("check on %s sent %s after the revocation was acknowledged: %v", c.node, c.call.Sub(acked), c.decision)
		}
	}
	t.Logf("%d checks answered after the revocation was acknowledged, %d not denied", after, allowedAfter)
	require.Positive(t, after)
}

func checkOn(c *client.Client, from string) (*trustfedv1.CheckInteractionResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Registry().CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: "hub", Action: "task_send"})
}
