package consensus

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Sentinel errors returned (wrapped) by Node methods. Test with errors.Is.
var (
	// ErrNotLeader: the call needs the leader and this node is not it.
	// Forward to Leader() or retry elsewhere.
	ErrNotLeader = errors.New("not the leader")
	// ErrNoLeader: no leader is known right now (election in progress or
	// the leader's API address has not been replicated yet).
	ErrNoLeader = errors.New("no known leader")
	// ErrNotReady: this node is leader but has not yet completed the
	// barrier of its term, so its state may still miss committed entries.
	ErrNotReady = errors.New("leader not ready: barrier for this term not complete")
	// ErrUnknownOutcome: a proposal was handed to raft but leadership was
	// lost, the node closed or the deadline passed before it was
	// acknowledged. The command may or may not be committed.
	ErrUnknownOutcome = errors.New("outcome unknown: leadership lost or timed out before the command was acknowledged")
	// ErrClosed: the node has been closed.
	// ErrStorage: this node cannot write its Raft log or stable store (a
	// full disk, a read-only data dir); it answers no linearizable read
	// until it can (Node.StorageFault).
	ErrStorage = errors.New("this node cannot write its raft log")
	ErrClosed  = errors.New("node closed")
	// ErrLeaderChanged: a call to the leader was abandoned because this
	// node saw the leader change (or lost it) while the call was out. A
	// write it carried may or may not have been applied.
	ErrLeaderChanged = errors.New("leader changed during the call")
	// ErrLeaderUnreachable: the leader did not answer a call within
	// LeaderCallTimeout.
	ErrLeaderUnreachable = errors.New("leader unreachable")
	// ErrCatchingUp: this node has not yet applied the log the leader had
	// committed when the node started (CaughtUp); its state may miss
	// committed entries, so it must not answer from it.
	ErrCatchingUp = errors.New("node is catching up with the leader's log")
	// ErrUnsafeChange: a membership change was refused because it could
	// leave the cluster without a reachable quorum (or would add a voter
	// that has not caught up). Nothing was changed.
	ErrUnsafeChange = errors.New("membership change refused")
)

// errWaitClosed is returned by wait when the node closed while a raft future
// was outstanding; callers turn it into ErrClosed (plus ErrUnknownOutcome for
// proposals).
var errWaitClosed = errors.New("node closed while waiting for raft")

// mapProposeErr maps the error of a log proposal (command, membership
// change). appended says whether the entry may have reached the log: then
// anything but success is ErrUnknownOutcome. closed adds ErrClosed.
func mapProposeErr(op string, err error, appended, closed bool) error {
	var out error
	switch {
	case errors.Is(err, errWaitClosed):
		out = fmt.Errorf("%s: %w: %w", op, ErrClosed, ErrUnknownOutcome)
	case errors.Is(err, raft.ErrRaftShutdown) && !appended:
		out = fmt.Errorf("%s: %w", op, ErrClosed)
	case errors.Is(err, raft.ErrRaftShutdown):
		out = fmt.Errorf("%s: %w: %w", op, ErrClosed, ErrUnknownOutcome)
	case errors.Is(err, raft.ErrNotLeader) && !appended:
		out = fmt.Errorf("%s: %w", op, ErrNotLeader)
	case appended,
		errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrEnqueueTimeout),
		errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled):
		out = fmt.Errorf("%s: %w: %w", op, ErrUnknownOutcome, err)
	default:
		out = fmt.Errorf("%s: %w", op, err)
	}
	if closed && !errors.Is(out, ErrClosed) {
		out = fmt.Errorf("%w: %w", ErrClosed, out)
	}
	return out
}

// mapQueryErr maps the error of a non-mutating raft call (VerifyLeader,
// GetConfiguration, Snapshot): losing leadership is simply ErrNotLeader.
func mapQueryErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%s: %w", op, ErrNotLeader)
	case errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, errWaitClosed):
		return fmt.Errorf("%s: %w", op, ErrClosed)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}
