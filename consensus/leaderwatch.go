package consensus

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A call to the leader (read index, audit batch, forwarded write) must not
// outlive the leader: a partitioned leader does not reset connections, it
// just never answers. Such calls run under LeaderCall, which cancels them as
// soon as this node sees the leader change (raft's LeaderObservation: a
// follower drops its leader after one heartbeat timeout without contact) and
// bounds them by leaderCallFactor election timeouts (never below
// minLeaderCallTimeout) in case the leader is alive but stuck.
const (
	leaderCallFactor     = 3
	minLeaderCallTimeout = time.Second
	observationBuffer    = 64
)

// leaderWatch tracks the leader this node knows and wakes whoever waits for
// it to change.
type leaderWatch struct {
	mu      sync.Mutex
	id      string        // leader id as last seen; "" = none
	changed chan struct{} // closed (and replaced) when id changes
}

// updateLocked sets the current leader id; it closes the change channel if the
// id differs. Callers hold w.mu.
func (w *leaderWatch) updateLocked(id string) {
	if w.changed == nil {
		w.changed = make(chan struct{})
	}
	if id == w.id {
		return
	}
	w.id = id
	close(w.changed)
	w.changed = make(chan struct{})
}

// isLeaderChange selects raft's leader observations (for leaderObs).
func isLeaderChange(o *raft.Observation) bool {
	_, ok := o.Data.(raft.LeaderObservation)
	return ok
}

// refreshLeader is watch's answer to a leader observation. The observation
// only says "look again": the current leader is read from raft, so a
// dropped observation (buffer full) is healed by the next one and by
// LeaderChanged's own look.
func (n *Node) refreshLeader() {
	_, id := n.raft.LeaderWithID()
	n.leaders.mu.Lock()
	n.leaders.updateLocked(string(id))
	n.leaders.mu.Unlock()
}

// LeaderChanged returns a channel that is closed once the leader this node
// knows is no longer leaderID ("" = no leader known). It is already closed
// if the leader differs now.
func (n *Node) LeaderChanged(leaderID string) <-chan struct{} {
	n.leaders.mu.Lock()
	defer n.leaders.mu.Unlock()
	_, id := n.raft.LeaderWithID()
	n.leaders.updateLocked(string(id)) // raft may be ahead of its observation
	if string(id) != leaderID {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return n.leaders.changed
}

// LeaderCallTimeout bounds one call to the leader: leaderCallFactor
// election timeouts, at least minLeaderCallTimeout.
func (n *Node) LeaderCallTimeout() time.Duration {
	return max(leaderCallFactor*n.electionTimeout, minLeaderCallTimeout)
}

// LeaderCall returns a context for a call to leader leaderID: it ends after
// LeaderCallTimeout, or as soon as this node sees another leader (or none),
// whichever comes first. context.Cause names which (ErrLeaderChanged or
// ErrLeaderUnreachable). Call cancel when the call returns.
func (n *Node) LeaderCall(ctx context.Context, leaderID string) (context.Context, context.CancelFunc) {
	timeout := n.LeaderCallTimeout()
	ctx, cancelTimeout := context.WithTimeoutCause(ctx, timeout,
		fmt.Errorf("%w: leader %s did not answer within %s", ErrLeaderUnreachable, leaderID, timeout))
	ctx, cancel := context.WithCancelCause(ctx)
	changed := n.LeaderChanged(leaderID)
	go func() { // ends with ctx, which cancel below ends at the latest
		select {
		case <-changed:
			cancel(fmt.Errorf("%w: %s is no longer the leader this node knows", ErrLeaderChanged, leaderID))
		case <-ctx.Done():
		}
	}()
	return ctx, func() {
		cancel(context.Canceled)
		cancelTimeout()
	}
}

// CallErr is the error of a call made under LeaderCall's ctx: the cause of
// its end when the call's own context ended it (leader change, timeout) and
// the caller's parent context is still live, err otherwise.
func CallErr(parent, call context.Context, err error) error {
	if err == nil || call.Err() == nil || parent.Err() != nil {
		return err
	}
	return fmt.Errorf("%w (%v)", context.Cause(call), err)
}
