package consensus

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// errCallerGone: the caller's context ended before its shared round did.
var errCallerGone = errors.New("caller gone")

// ReadIndex returns an index such that state applied up to it reflects
// every write acknowledged to any client before the call. Leader only, and
// only once ready: ErrNotReady before the barrier of this term completed,
// ErrNotLeader elsewhere. Callers then WaitApplied(index).
//
// The index is the local applied index read while ready in term T,
// followed by VerifyLeader succeeding in the same term T (see DESIGN.md).
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.isClosed() {
		return 0, fmt.Errorf("read index: %w", ErrClosed)
	}
	term := n.readyTerm.Load()
	if term == 0 || n.raft.CurrentTerm() != term {
		if n.raft.State() == raft.Leader {
			return 0, fmt.Errorf("read index: %w", ErrNotReady)
		}
		return 0, fmt.Errorf("read index: %w", ErrNotLeader)
	}
	idx := n.fsm.appliedIndex()
	commit := n.raft.CommitIndex()
	_, err := n.verify.do(ctx.Done(), func() (uint64, error) {
		return 0, n.wait(context.Background(), n.raft.VerifyLeader())
	})
	if errors.Is(err, errCallerGone) {
		err = ctx.Err()
	}
	if err != nil {
		return 0, mapQueryErr("read index: verify leader", err)
	}
	if n.readyTerm.Load() != term || n.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("read index: leadership changed during read: %w", ErrNotLeader)
	}
	// A follower applies an entry as soon as it learns it is committed,
	// which can be before this node's own state machine gets to it: a read
	// there may already have returned it. Cover everything committed when
	// the read began.
	last, err := n.lastStateEntry(idx, commit)
	if err != nil {
		return 0, fmt.Errorf("read index: %w", err)
	}
	if last > idx {
		if err := n.WaitApplied(ctx, last); err != nil {
			return 0, fmt.Errorf("read index: %w", err)
		}
		idx = last
	}
	return idx, nil
}

// lastStateEntry is the highest index in (from, to] of an entry that
// reaches the state machine (a command or a configuration), or from if
// there is none: raft keeps no-op and barrier entries to itself, so the
// applied index never names them.
func (n *Node) lastStateEntry(from, to uint64) (uint64, error) {
	var l raft.Log
	for i := to; i > from; i-- {
		if err := n.logs.GetLog(i, &l); err != nil {
			return 0, fmt.Errorf("log entry %d: %w", i, err)
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i, nil
		}
	}
	return from, nil
}

// LinearizableRead makes the local state fresh enough for a linearizable
// read: it gets a read index (from itself on the leader, from the leader
// through LeaderClient on a follower), waits until the local state machine
// applied it, and returns the local applied index (>= the read index).
func (n *Node) LinearizableRead(ctx context.Context) (uint64, error) {
	if err := n.StorageFault(); err != nil {
		// It could not store what it would have to apply first.
		return 0, fmt.Errorf("linearizable read: %w: %v", ErrStorage, err)
	}
	idx, err := n.readIndexAnywhere(ctx)
	if err != nil {
		return 0, fmt.Errorf("linearizable read: %w", err)
	}
	if err := n.WaitApplied(ctx, idx); err != nil {
		return 0, fmt.Errorf("linearizable read: %w", err)
	}
	return n.fsm.appliedIndex(), nil
}

func (n *Node) readIndexAnywhere(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.ReadIndex(ctx)
	}
	leader, ok := n.Leader()
	if !ok {
		return 0, ErrNoLeader
	}
	if leader.ID == n.cfg.NodeID {
		return n.ReadIndex(ctx) // raft still names us; ReadIndex says why not
	}
	if n.cfg.LeaderClient == nil {
		return 0, fmt.Errorf("no leader client to reach leader %s: %w", leader.ID, ErrNotLeader)
	}
	if leader.APIAddr == "" {
		return 0, fmt.Errorf("API address of leader %s not replicated yet: %w", leader.ID, ErrNoLeader)
	}
	// Concurrent readers share one RPC that started after they arrived. The
	// RPC runs under its own deadline (not one caller's context), bounded so
	// a vanished leader cannot hold the round.
	idx, err := n.leaderReads.do(ctx.Done(), n.readIndexFromLeader)
	if errors.Is(err, errCallerGone) {
		err = ctx.Err()
	}
	if err != nil {
		return 0, fmt.Errorf("read index from leader %s at %s: %w", leader.ID, leader.APIAddr, err)
	}
	return idx, nil
}

// WaitApplied blocks until the local state machine applied index (or ctx is
// done, or the node closes). It waits on a notification channel, never
// polls.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := n.fsm.waitCh()
		applied := n.fsm.appliedIndex()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, applied, ctx.Err())
		case <-n.closed:
			return fmt.Errorf("wait for index %d: %w", index, ErrClosed)
		}
	}
}

// readIndexFromLeader is one read-index RPC to the leader known now (the
// round function of leaderReads: it looks the leader up itself, as rounds
// outlive the call that started them).
func (n *Node) readIndexFromLeader() (uint64, error) {
	leader, ok := n.Leader()
	if !ok || leader.APIAddr == "" {
		return 0, ErrNoLeader
	}
	if leader.ID == n.cfg.NodeID {
		return 0, ErrNotLeader // leadership moved here mid-round: the caller retries
	}
	// Bounded, and abandoned as soon as the leader changes: a leader cut
	// off by a partition never answers (LeaderCall).
	rctx, cancel := n.LeaderCall(context.Background(), leader.ID)
	defer cancel()
	idx, err := n.cfg.LeaderClient.ReadIndex(rctx, leader.APIAddr)
	return idx, CallErr(context.Background(), rctx, err)
}
