package consensus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A call to the leader made under LeaderCall ends as soon as the caller
// sees the leader go (not after its timeout), and after LeaderCallTimeout
// when the leader stays but never answers; a call to a node that is not
// the leader any more ends at once. Every node of a running cluster
// catches up.
func TestLeaderCallEndsWhenTheLeaderChanges(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	leader := waitLeader(t, nodes...)
	waitKnownLeader(t, nodes...)
	fs := followers(leader, nodes...)
	follower := fs[len(fs)-1]
	require.Eventually(t, func() bool { return n1.CaughtUp() && n2.CaughtUp() && n3.CaughtUp() }, waitTimeout, 5*time.Millisecond, "every node catches up")

	// Bounded while the leader stays.
	start := time.Now()
	ctx, cancel := follower.LeaderCall(context.Background(), leader.id)
	<-ctx.Done()
	cancel()
	require.ErrorIs(t, context.Cause(ctx), ErrLeaderUnreachable)
	require.InDelta(t, follower.LeaderCallTimeout().Seconds(), time.Since(start).Seconds(), 0.5)

	// Over at once for a node that is not the leader.
	ctx, cancel = follower.LeaderCall(context.Background(), follower.id)
	<-ctx.Done()
	cancel()
	require.ErrorIs(t, context.Cause(ctx), ErrLeaderChanged)

	// Over when the leader goes, well before the timeout.
	ctx, cancel = follower.LeaderCall(context.Background(), leader.id)
	defer cancel()
	leader.stop()
	start = time.Now()
	<-ctx.Done()
	require.ErrorIs(t, context.Cause(ctx), ErrLeaderChanged)
	require.Less(t, time.Since(start), follower.LeaderCallTimeout(), "abandoned at the leader change, not at the timeout")
	require.True(t, errors.Is(CallErr(context.Background(), ctx, context.Canceled), ErrLeaderChanged))
}
