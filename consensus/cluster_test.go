package consensus

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestThreeNodeCluster(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	ctx := ctxT(t)

	res := apply(t, "set color blue", nodes...)
	leader := waitLeader(t, nodes...)

	// Every node, leader or follower, reads its own write after a
	// linearizable read.
	for _, n := range nodes {
		at, err := n.LinearizableRead(ctx)
		require.NoError(t, err, n.id)
		require.GreaterOrEqual(t, at, res.Index, n.id)
		require.Equal(t, "blue", n.kv.get("color"), n.id)
	}

	// Followers know who leads and where its API lives.
	for _, n := range nodes {
		if n == leader {
			continue
		}
		l, ok := n.Leader()
		require.True(t, ok)
		require.Equal(t, leader.id, l.ID)
		require.Equal(t, leader.api, l.APIAddr)
		require.Equal(t, leader.RaftAddr(), l.RaftAddr)
		require.Positive(t, n.LastContact())
		require.Less(t, n.LastContact(), waitTimeout)
		st := n.Status()
		require.False(t, st.Ready)
		require.Equal(t, "Follower", st.State)
	}

	servers, err := n2.Servers(ctx)
	require.NoError(t, err)
	require.Len(t, servers, 3)
	for _, s := range servers {
		require.True(t, s.Voter)
		require.Equal(t, "api-"+s.ID+".test:443", s.APIAddr)
		require.Equal(t, s.ID == leader.id, s.Leader)
	}

	// AddVoter is idempotent for an existing voter at the same address.
	require.NoError(t, leader.AddVoter(ctx, n3.id, n3.RaftAddr(), n3.api))

	// After each acknowledged write, a linearizable read on any node sees
	// it; then every node converges on the same state.
	var last ApplyResult
	for i := range 20 {
		last = apply(t, fmt.Sprintf("set k v%d", i), nodes...)
		reader := nodes[i%len(nodes)]
		_, err := reader.LinearizableRead(ctx)
		require.NoError(t, err, reader.id)
		require.Equal(t, fmt.Sprintf("v%d", i), reader.kv.get("k"), "stale read on %s", reader.id)
	}
	for _, n := range nodes {
		require.NoError(t, n.WaitApplied(ctx, last.Index))
		require.Equal(t, leader.kv.all(), n.kv.all(), n.id)
		require.Equal(t, leader.fsm.metadata(), n.fsm.metadata(), n.id)
	}

	// Remove a follower: the configuration shrinks, writes still commit.
	follower := followers(leader, nodes...)[0]
	require.NoError(t, leader.RemoveServer(ctx, follower.id))
	require.NoError(t, leader.RemoveServer(ctx, follower.id), "removing a non-member is a no-op")
	servers, err = leader.Servers(ctx)
	require.NoError(t, err)
	require.Len(t, servers, 2)
	for _, s := range servers {
		require.NotEqual(t, follower.id, s.ID)
	}
	var rest []*testNode
	for _, n := range nodes {
		if n != follower {
			rest = append(rest, n)
		}
	}
	apply(t, "set after removal", rest...)
}

func TestLeaderFailoverAndRestart(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	ctx := ctxT(t)

	for i := range 5 {
		apply(t, fmt.Sprintf("set before%d x", i), nodes...)
	}
	old := waitLeader(t, nodes...)
	oldTerm := old.LeaderTerm()
	require.NotZero(t, oldTerm, "the ready leader names its term")
	for _, n := range nodes {
		if n != old {
			require.Zero(t, n.LeaderTerm(), "a follower leads no term: %s", n.id)
		}
	}
	res, err := old.Apply(ctx, []byte("set term old"))
	require.NoError(t, err)
	require.Equal(t, oldTerm, res.Term, "an entry committed by the leader of a term reports that term")
	oldAddr := old.RaftAddr()
	old.stop()

	var rest []*testNode
	for _, n := range nodes {
		if n != old {
			rest = append(rest, n)
		}
	}
	leader := waitLeader(t, rest...)
	require.NotEqual(t, old.id, leader.id)
	waitKnownLeader(t, rest...)

	// Data intact on the new leader, and on the other survivor.
	for _, n := range rest {
		_, err := n.LinearizableRead(ctx)
		require.NoError(t, err, n.id)
		for i := range 5 {
			require.Equal(t, "x", n.kv.get(fmt.Sprintf("before%d", i)), n.id)
		}
	}
	for _, n := range rest {
		l, _ := n.Leader()
		require.Equal(t, leader.api, l.APIAddr, n.id)
	}

	// New writes work with one node down, in the new leader's later term.
	res = apply(t, "set after failover", rest...)
	require.Greater(t, res.Term, oldTerm)

	// The stopped node comes back from its data dir at its old address
	// and catches up.
	back := c.startAt(old.id, oldAddr, false, nil)
	require.Equal(t, oldAddr, back.RaftAddr())
	require.NoError(t, back.WaitApplied(ctx, res.Index))
	require.Equal(t, "failover", back.kv.get("after"))
	require.Equal(t, leader.kv.all(), back.kv.all())

	// And takes part in the cluster again.
	all := append(rest, back)
	res = apply(t, "set rejoined yes", all...)
	require.NoError(t, back.WaitApplied(ctx, res.Index))
	at, err := back.LinearizableRead(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, at, res.Index)
	require.Equal(t, "yes", back.kv.get("rejoined"))
}

func TestAdvertiseDNSName(t *testing.T) {
	c := newCluster(t)
	port := freePort(t)
	c.tweak = func(cfg *Config) {
		if cfg.NodeID == "n2" {
			cfg.BindAddr = "127.0.0.1:" + port
			cfg.AdvertiseAddr = "localhost:" + port
		}
	}
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	n2 := c.start("n2", false)
	require.Equal(t, "localhost:"+port, n2.RaftAddr())
	join(t, n2, n1)
	res := apply(t, "set via dns", n1, n2)
	require.NoError(t, n2.WaitApplied(ctxT(t), res.Index))
	require.Equal(t, "dns", n2.kv.get("via"))
}
