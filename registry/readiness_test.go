package registry

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/consensus"
)

// An elected leader is not ready until the barrier of its term is
// committed: before it, it cannot serve a linearizable read (a follower's
// read index through it fails), so /readyz must not say 200.
func TestElectedLeaderIsNotReadyBeforeItsBarrier(t *testing.T) {
	r := newMemberRig(t, false)
	r.raft.status.Store(&consensus.Status{NodeID: "n1", State: "Leader", HasLeader: true, Leader: consensus.Server{ID: "n1"}, CaughtUp: true, Ready: false})
	got := r.s.Readiness()
	require.False(t, got.Ready)
	require.Contains(t, got.Reason, "not ready yet")
	r.raft.status.Store(&consensus.Status{NodeID: "n1", State: "Leader", HasLeader: true, Leader: consensus.Server{ID: "n1"}, CaughtUp: true, Ready: true})
	got = r.s.Readiness()
	require.True(t, got.Ready, got.Reason)
	r.raft.status.Store(&consensus.Status{NodeID: "n1", State: "Follower", HasLeader: true, Leader: consensus.Server{ID: "n2"}, CaughtUp: true})
	require.True(t, r.s.Readiness().Ready, "a caught-up follower with a leader is ready")
}
