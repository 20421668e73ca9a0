package consensus

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", freePort(t))
}

func TestJoinAsNonvoterThenPromoted(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	n2 := c.start("n2", false)
	ctx := ctxT(t)

	sv, err := n1.AddNonvoter(ctx, n2.id, n2.RaftAddr(), n2.api)
	require.NoError(t, err)
	require.False(t, sv.Voter, "a joining server starts as a non-voter")
	require.Equal(t, n2.api, sv.APIAddr)

	// The leader promotes it once it has caught up and stayed so.
	waitSuffrage(t, n2.id, true, n1)
	s, ok := serverOn(t, n1, n2.id)
	require.True(t, ok)
	require.True(t, s.CaughtUp, "the leader sees its new voter")

	// Joining again changes nothing: a voter is never demoted.
	sv, err = n1.AddNonvoter(ctx, n2.id, n2.RaftAddr(), n2.api)
	require.NoError(t, err)
	require.True(t, sv.Voter)
	res := apply(t, "set joined yes", n1, n2)
	require.NoError(t, n2.WaitApplied(ctx, res.Index))
	require.Equal(t, "yes", n2.kv.get("joined"))
}

// The adversarial run's reproduction at the consensus layer: a server that
// cannot be reached joins as a non-voter, so the single voter keeps its
// quorum of one, before and after a restart, and is never promoted.
func TestUnreachableJoinerKeepsTheLeader(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	ctx := ctxT(t)
	ghost := closedAddr(t)

	_, err := n1.AddNonvoter(ctx, "ghost", "127.0.0.1:99999", "api-ghost.test:443")
	require.ErrorContains(t, err, "not in 1..65535")
	sv, err := n1.AddNonvoter(ctx, "ghost", ghost, "api-ghost.test:443")
	require.NoError(t, err)
	require.False(t, sv.Voter)

	// Writes keep committing for several promotion periods; the ghost
	// stays a non-voter that is not caught up.
	for deadline := time.Now().Add(5 * promoteAfter); time.Now().Before(deadline); {
		apply(t, "set alive yes", n1)
		s, ok := serverOn(t, n1, "ghost")
		require.True(t, ok)
		require.False(t, s.Voter, "an unreachable server must never be promoted")
		require.False(t, s.CaughtUp)
	}
	err = n1.AddVoter(ctx, "ghost", ghost, "api-ghost.test:443")
	require.ErrorIs(t, err, ErrUnsafeChange, "a voter that has not caught up is refused")

	n1 = c.restart(n1)
	waitLeader(t, n1)
	res := apply(t, "set after restart", n1)
	require.Equal(t, "restart", n1.kv.get("after"))
	s, ok := serverOn(t, n1, "ghost")
	require.True(t, ok)
	require.False(t, s.Voter)

	require.NoError(t, n1.RemoveServer(ctx, "ghost"), "a non-voter can always be removed")
	servers, err := n1.Servers(ctx)
	require.NoError(t, err)
	require.Len(t, servers, 1)
	require.NoError(t, n1.WaitApplied(ctx, res.Index))
}

func TestAddVoterNeedsACaughtUpNonvoter(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	n2 := c.start("n2", false)
	err := n1.AddVoter(ctxT(t), n2.id, n2.RaftAddr(), n2.api)
	require.ErrorIs(t, err, ErrUnsafeChange, "a server that is not even a non-voter cannot become a voter")
	servers, err := n1.Servers(ctxT(t))
	require.NoError(t, err)
	require.Len(t, servers, 1, "nothing changed")
}

func TestRemoveVoterThatWouldLoseQuorumIsRefused(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	leader := waitLeader(t, nodes...)
	fs := followers(leader, nodes...)
	live, dead := fs[0], fs[1]
	dead.stop()
	require.Eventually(t, func() bool {
		s, ok := serverOn(t, leader, dead.id)
		return ok && !s.CaughtUp
	}, waitTimeout, 10*time.Millisecond, "the leader notices %s is gone", dead.id)

	// Removing the live follower would leave {leader, dead}: one reachable
	// voter of two, no quorum.
	err := leader.RemoveServer(ctxT(t), live.id)
	require.ErrorIs(t, err, ErrUnsafeChange)
	require.ErrorContains(t, err, "a quorum needs 2")
	servers, err := leader.Servers(ctxT(t))
	require.NoError(t, err)
	require.Len(t, servers, 3, "nothing changed")

	// Removing the dead one is how an operator replaces it: allowed.
	require.NoError(t, leader.RemoveServer(ctxT(t), dead.id))
	servers, err = leader.Servers(ctxT(t))
	require.NoError(t, err)
	require.Len(t, servers, 2)
	apply(t, "set two left", leader, live)

}

func TestRemoveTheLastVoterIsRefused(t *testing.T) {
	c := newCluster(t)
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	err := n1.RemoveServer(ctxT(t), n1.id)
	require.ErrorIs(t, err, ErrUnsafeChange)
	require.ErrorContains(t, err, "no voter left")
	apply(t, "set still leading", n1)
}

func TestRecoverFromPeersFile(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	res := apply(t, "set before loss", nodes...)
	for _, n := range nodes {
		require.NoError(t, n.WaitApplied(ctxT(t), res.Index), n.id)
	}
	addr := n1.RaftAddr()

	require.ErrorContains(t, PrepareRecovery(n1.dataDir, []RecoveryServer{{ID: "n1", RaftAddr: addr}}), "stop the server first")
	for _, n := range nodes {
		n.stop()
	}
	// n2 and n3 are lost for good; n1 alone cannot elect itself.
	require.ErrorContains(t, PrepareRecovery(n1.dataDir, nil), "no server listed")
	require.ErrorContains(t, PrepareRecovery(n1.dataDir, []RecoveryServer{{ID: "n1", RaftAddr: "127.0.0.1:99999"}}), "not in 1..65535")
	require.ErrorContains(t, PrepareRecovery(t.TempDir(), []RecoveryServer{{ID: "n1", RaftAddr: addr}}), "no Raft state")
	require.NoError(t, PrepareRecovery(n1.dataDir, []RecoveryServer{{ID: "n1", RaftAddr: addr}}))

	back := c.startAt("n1", addr, false, nil)
	waitLeader(t, back)
	require.Equal(t, "loss", back.kv.get("before"), "the committed state survived")
	servers, err := back.Servers(ctxT(t))
	require.NoError(t, err)
	require.Len(t, servers, 1)
	require.True(t, servers[0].Voter)
	res = apply(t, "set after recovery", back)
	require.Equal(t, "recovery", back.kv.get("after"))

	// The file was consumed: a plain restart keeps the recovered cluster.
	back = c.restart(back)
	waitLeader(t, back)
	require.NoError(t, back.WaitApplied(ctxT(t), res.Index))
	require.Equal(t, "recovery", back.kv.get("after"))
	require.NoFileExists(t, fmt.Sprintf("%s/%s", back.dataDir, PeersFile))
}
