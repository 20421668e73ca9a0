package system_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// partitionedCluster is a three-node cluster whose servers reach each
// other only through the proxies of net (raft and API ports), so a test
// can cut one off.
func partitionedCluster(t *testing.T) (*cluster, *testutil.Network) {
	network := testutil.NewNetwork(t)
	var mu sync.Mutex
	var pids []int
	candidates := func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), pids...)
	}
	raftP, apiP, raftBind := map[string]*testutil.Proxy{}, map[string]*testutil.Proxy{}, map[string]string{}
	for _, id := range []string{"n1", "n2", "n3"} {
		raftP[id], apiP[id] = network.Proxy(candidates), network.Proxy(candidates)
		raftBind[id] = testutil.FreeAddr(t) // addrs.json names the advertised one
	}
	c := startClusterWith(t, clusterHooks{
		args: func(id string) []string {
			return []string{"-raft-addr", raftBind[id], "-advertise-raft", raftP[id].Addr(), "-advertise-api", apiP[id].Addr()}
		},
		started: func(id string, s *testutil.Server) {
			mu.Lock()
			pids = append(pids, s.PID())
			mu.Unlock()
			raftP[id].SetTarget(raftBind[id], s.PID())
			apiP[id].SetTarget(s.Addrs.GRPCAddr, s.PID())
		},
	})
	return c, network
}

// logCount is how many times the server's log holds s.
func logCount(t *testing.T, srv *testutil.Server, s string) int {
	b, err := os.ReadFile(filepath.Join(srv.DataDir, "server.log"))
	require.NoError(t, err)
	return strings.Count(string(b), s)
}

// A leader cut off by a real partition (its connections hang, nothing is
// reset) must not hold the majority's checks: a follower's audit batch or
// read index sent to it is abandoned as soon as the follower sees the
// leader go, and sent again to the new leader. Checks resume on both
// remaining nodes within a second of the new leader being ready (they
// waited ~10 s for the peer-call timeout before). A check refused for want
// of a leader is an availability event, not an authentication failure.
func TestPartitionedLeaderDoesNotStallChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c, network := partitionedCluster(t)
	all := []string{"n1", "n2", "n3"}
	old := c.leader(t, all...)
	var followers []string
	for _, id := range all {
		if id != old {
			followers = append(followers, id)
		}
	}
	admin := c.clients[old]
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "acme-bank", 3)
	enrol(t, admin, c.fed, "st-mary", 2)
	agree(t, admin, c.fed, "acme-bank", "st-mary", "task_send")
	members := c.memberClients(t, admin, "acme-bank")
	check := func(id string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := members[id].Registry().CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{
			FromOrganizationId: "acme-bank", ToOrganizationId: "st-mary", Action: "task_send"})
		return err
	}
	for _, id := range all {
		require.NoError(t, check(id), "%s answers before the partition", id)
	}
	readyBefore := map[string]int{}
	for _, id := range followers {
		readyBefore[id] = logCount(t, c.servers[id], "leader ready")
	}

	network.Isolate(c.servers[old].PID())
	cut := time.Now()

	// A write a follower forwards to the old leader (it still believes in
	// it for a heartbeat timeout) is abandoned at the leader change, not
	// after the forward timeout; the client's retry reaches the new leader.
	type outcome struct {
		took time.Duration
		err  error
	}
	written := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := c.clients[followers[0]].Admin().UpdateOrganization(ctx, &trustfedv1.UpdateOrganizationRequest{OrganizationId: "acme-bank", Name: "Acme Bank (partitioned)"})
		written <- outcome{time.Since(cut), err}
	}()

	// Load on the majority while it elects: checks, and calls with an
	// unknown token (each an audit event for the followers' batches).
	stop := make(chan struct{})
	var load sync.WaitGroup
	for _, id := range followers {
		stranger := dial(t, c.servers[id], c.pki.CAFile, "not-a-token")
		load.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_ = check(id)
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				_, _ = stranger.Registry().ListOrganizations(ctx, &trustfedv1.ListOrganizationsRequest{})
				cancel()
			}
		})
	}
	defer func() { close(stop); load.Wait() }()

	var newLeader string
	testutil.Eventually(t, 30*time.Second, "a follower becomes the ready leader", func() error {
		for _, id := range followers {
			if logCount(t, c.servers[id], "leader ready") > readyBefore[id] {
				newLeader = id
				return nil
			}
		}
		return os.ErrNotExist
	})
	ready := time.Now()
	t.Logf("new leader %s ready %s after the partition", newLeader, ready.Sub(cut).Round(time.Millisecond))

	for _, id := range followers {
		testutil.Eventually(t, 30*time.Second, id+" answers checks again", func() error { return check(id) })
		took := time.Since(ready)
		t.Logf("%s answers checks %s after the new leader was ready", id, took.Round(time.Millisecond))
		require.Less(t, took, 2*time.Second, "%s: checks must resume right after the new leader is ready", id)
	}

	w := <-written
	t.Logf("write through %s answered %v after %s", followers[0], status.Code(w.err), w.took.Round(time.Millisecond))
	require.Contains(t, []codes.Code{codes.OK, codes.Unavailable}, status.Code(w.err), "%v", w.err)
	require.Less(t, w.took, 5*time.Second, "a forwarded write does not wait for a leader that never answers")

	// No call refused for want of a leader counts as an authentication
	// failure.
	hc := httpsClient(t, c.pki.CAFile)
	for _, id := range followers {
		code, m, body := scrape(t, hc, "https://"+c.servers[id].Addrs.HTTPAddr, c.token)
		require.Equal(t, http.StatusOK, code, "%s: %s", id, body)
		require.Zero(t, metricValue(m, "trustfed_auth_failures_total", map[string]string{"code": "Unavailable"}), "%s", id)
		var unavailable float64
		for _, r := range []string{"no_leader", "leader_changed", "leader_unreachable", "deadline"} {
			unavailable += metricValue(m, "trustfed_unavailable_total", map[string]string{"reason": r})
		}
		t.Logf("%s: %v calls not served for want of a leader", id, unavailable)
	}
}
