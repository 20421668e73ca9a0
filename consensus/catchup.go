package consensus

import (
	"context"
	"time"
)

// Catching up. A node that starts (or restarts) holds the state of its last
// snapshot plus whatever it re-applies; raft applies the rest of its log
// only as it learns the leader's commit index. Until it has, its state may
// miss committed entries — a token created, an organisation registered —
// and must not answer "unknown" or "not found" from it.
//
// A node is caught up once its state machine applied an index the leader
// vouched for after the node started: on a follower, a read index obtained
// from the leader (the leader's applied index, ReadIndex); on the leader,
// the barrier of its term. It stays caught up: from then on every read
// waits for its own read index (LinearizableRead), and a snapshot installed
// by the leader only moves the state forward.

// Bounds of the wait between catch-up attempts (no leader yet, leader not
// reachable).
const (
	catchUpMinBackoff = 50 * time.Millisecond
	catchUpMaxBackoff = time.Second
)

// CaughtUp reports whether this node's state machine has applied the log as
// far as a leader had committed it after this node started (see above).
func (n *Node) CaughtUp() bool { return n.caughtUp.Load() }

// catchUp marks the node caught up once it applied a read index it got
// from the leader. It returns then, or when ctx ends or the node closes; on
// a node that becomes leader first, leadTerm marks it at its barrier.
func (n *Node) catchUp(ctx context.Context) {
	backoff := catchUpMinBackoff
	for !n.caughtUp.Load() {
		idx, err := n.readIndexAnywhere(ctx)
		if err == nil {
			if err = n.WaitApplied(ctx, idx); err == nil {
				n.caughtUp.Store(true)
				n.logger.Info("caught up with the leader's log", "applied_index", n.fsm.appliedIndex(), "read_index", idx)
				return
			}
		}
		n.logger.Debug("not caught up yet", "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-n.closed:
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, catchUpMaxBackoff)
	}
}
