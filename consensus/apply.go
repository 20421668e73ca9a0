package consensus

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// ApplyResult is the outcome of a committed and applied command.
type ApplyResult struct {
	Index    uint64 // log index of the command
	Response any    // what StateMachine.Apply returned on this leader
	// Term is this node's Raft term read once the entry was committed and
	// applied. A node leads a term at most once and terms never go back, so
	// if LeaderTerm() returned Term before the proposal, the entry was
	// appended and committed in that term, by this node as its leader.
	Term uint64
}

// Apply proposes cmd and returns once it is committed and applied on this
// node, which must be the leader. The raft enqueue timeout and the wait are
// bounded by ctx's deadline (10s if ctx has none). Errors: ErrNotLeader (not
// proposed), ErrClosed, or ErrUnknownOutcome (proposed, fate unknown).
func (n *Node) Apply(ctx context.Context, cmd []byte) (ApplyResult, error) {
	data := make([]byte, 1+len(cmd))
	data[0] = kindUser
	copy(data[1:], cmd)
	return n.propose(ctx, "apply", data)
}

// propose hands one command entry (kind byte included) to raft.
func (n *Node) propose(ctx context.Context, op string, data []byte) (ApplyResult, error) {
	if n.isClosed() {
		return ApplyResult{}, fmt.Errorf("%s: %w", op, ErrClosed)
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultApplyTimeout)
	defer cancel()
	timeout, err := untilDeadline(ctx)
	if err != nil {
		return ApplyResult{}, fmt.Errorf("%s: %w", op, err) // not proposed
	}
	f := n.raft.Apply(data, timeout)
	if err := n.waitProposal(ctx, op, f); err != nil {
		return ApplyResult{}, err
	}
	return ApplyResult{Index: f.Index(), Response: f.Response(), Term: n.raft.CurrentTerm()}, nil
}

// waitProposal waits for a proposal's future and maps its error. An entry
// raft answered with an error after giving it a log index was appended and
// may still commit: its outcome is unknown, whatever the error.
func (n *Node) waitProposal(ctx context.Context, op string, f raft.IndexFuture) error {
	resolved, err := n.await(ctx, f)
	if err == nil {
		return nil
	}
	appended := !resolved || f.Index() != 0 // f.Index is only safe to read once resolved
	return mapProposeErr(op, err, appended, n.isClosed())
}

// Snapshot forces raft to take a snapshot now. raft.ErrNothingNewToSnapshot
// is returned (wrapped) if nothing was applied since the last one.
func (n *Node) Snapshot(ctx context.Context) error {
	if n.isClosed() {
		return fmt.Errorf("snapshot: %w", ErrClosed)
	}
	if err := n.wait(ctx, n.raft.Snapshot()); err != nil {
		return mapQueryErr("snapshot", err)
	}
	return nil
}

// wait blocks until raft resolves f, ctx is done or the node is closed.
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	_, err := n.await(ctx, f)
	return err
}

// await is wait that also reports whether raft resolved f (as opposed to
// ctx or Close ending the wait).
//
// Raft futures cannot be cancelled and raft may drop some on Shutdown
// without resolving them, so the goroutine waiting on f.Error() is the one
// goroutine here without a stop: it ends when raft resolves f and, in
// that shutdown race only, never. It holds nothing but f.
func (n *Node) await(ctx context.Context, f raft.Future) (resolved bool, err error) {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return true, err
	case <-ctx.Done():
		return false, ctx.Err()
	case <-n.closed:
		select {
		case err := <-done:
			return true, err
		default:
			return false, errWaitClosed
		}
	}
}

// withDefaultTimeout gives ctx a deadline of d if it has none.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// untilDeadline converts ctx's deadline into a raft timeout (raft treats 0
// as "no timeout", so an expired ctx is an error instead).
func untilDeadline(ctx context.Context) (time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	dl, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	d := time.Until(dl)
	if d <= 0 {
		return 0, context.DeadlineExceeded
	}
	return d, nil
}
