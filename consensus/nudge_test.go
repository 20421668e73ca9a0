package consensus

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// With a commit timeout of 2 s, raft itself tells an idle follower that
// an entry committed 2–4 s after the fact (its heartbeats carry no commit
// index); the commit nudge tells it as soon as the leader applied it.
func TestFollowersLearnACommitWithoutWaitingForTheCommitTimeout(t *testing.T) {
	c := newCluster(t)
	c.tweak = func(cfg *Config) { cfg.CommitTimeout = 2 * time.Second }
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	// The followers refused nudges while they joined (they did not hold
	// the entries yet) and are in a short backoff: wait until one round
	// reaches both without the commit timeout.
	require.Eventually(t, func() bool { return followersApplyWithin(t, nodes, "warm-up", time.Second) }, 20*time.Second, time.Millisecond,
		"no round reached the followers before the commit timeout")
	for i := range 5 {
		require.True(t, followersApplyWithin(t, nodes, fmt.Sprint("round", i), time.Second),
			"the followers learned the commit only with raft's own AppendEntries (commit timeout 2 s)")
	}
}

// followersApplyWithin applies a command and reports whether every
// follower applied it within d of the leader.
func followersApplyWithin(t *testing.T, nodes []*testNode, what string, d time.Duration) bool {
	leader := waitLeader(t, nodes...)
	res := apply(t, "set k "+what, nodes...)
	start := time.Now()
	for _, n := range nodes {
		if n == leader {
			continue
		}
		require.NoError(t, n.WaitApplied(ctxT(t), res.Index), "%s applies index %d", n.id, res.Index)
	}
	took := time.Since(start)
	t.Logf("%s: the followers applied index %d %s after the leader", what, res.Index, took)
	return took < d
}
