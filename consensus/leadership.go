package consensus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// leaderTask is a function run for as long as this node is a ready leader.
type leaderTask struct {
	name string
	fn   func(ctx context.Context) error
}

// RegisterLeaderTask registers fn to be started by Run each time this node
// becomes a ready leader. Its ctx is cancelled on step-down, Close or Run
// exit, and Run waits for it to return before handling the next leadership
// change. A task that returns early is not restarted within the same term,
// so tasks should retry internally. Call before Run; tasks registered while
// Run is active start from the next term.
func (n *Node) RegisterLeaderTask(name string, fn func(ctx context.Context) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.tasks = append(n.tasks, leaderTask{name: name, fn: fn})
}

// IsLeader reports whether this node is the leader AND ready: the barrier
// of its current term has completed, so its state holds every committed
// entry.
func (n *Node) IsLeader() bool { return n.LeaderTerm() != 0 }

// LeaderTerm is the term in which this node is the ready leader, or 0 when
// it is not (see IsLeader). With ApplyResult.Term it lets a caller read
// local state and have the commit of a later entry prove the read fresh
// (see DESIGN.md, "Reads through the log").
func (n *Node) LeaderTerm() uint64 {
	t := n.readyTerm.Load()
	if t != 0 && n.raft.State() == raft.Leader && n.raft.CurrentTerm() == t {
		return t
	}
	return 0
}

// watch drains raft's NotifyCh for the whole life of the node. Raft blocks
// its leader loop on that channel, so it must never stop being read, even
// when Run is not running. Step-downs take effect here immediately. It
// also records raft's heartbeat observations (a non-blocking observer: a
// full channel drops them, never stalls raft).
func (n *Node) watch() {
	defer close(n.watchDone)
	for {
		select {
		case v := <-n.notifyCh:
			n.onLeadership(v)
		case o := <-n.observeCh:
			n.peers.observe(o)
		case <-n.leaderObs:
			n.refreshLeader()
		case <-n.stopWatch:
			return
		}
	}
}

func (n *Node) onLeadership(leader bool) {
	n.mu.Lock()
	n.raftLeader = leader
	if leader {
		n.epoch++
		n.peers.reset() // raft starts new heartbeats to every peer
	} else {
		n.clearReadyLocked()
	}
	epoch := n.epoch
	n.mu.Unlock()
	if leader {
		n.logger.Info("became raft leader", "epoch", epoch)
	} else {
		n.logger.Info("lost raft leadership", "epoch", epoch)
	}
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// clearReadyLocked drops readiness and cancels the running leader term.
// n.mu must be held.
func (n *Node) clearReadyLocked() {
	n.readyTerm.Store(0)
	if n.termCancel != nil {
		n.termCancel()
		n.termCancel = nil
	}
}

// stepDown is used by Close: not leader, not ready, leader tasks cancelled.
func (n *Node) stepDown() {
	n.mu.Lock()
	n.raftLeader = false
	n.clearReadyLocked()
	n.mu.Unlock()
}

// Run owns the leadership loop: each time raft makes this node leader it
// runs a barrier in that term, marks the node ready, publishes the node's
// API address if needed and runs the leader tasks until step-down. It
// returns nil when ctx is done, and ErrClosed if the node is closed first.
// At most one Run may be active.
func (n *Node) Run(ctx context.Context) error {
	n.mu.Lock()
	if n.running {
		n.mu.Unlock()
		return errors.New("consensus: Run is already running")
	}
	n.running = true
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		n.running = false
		n.mu.Unlock()
	}()

	var catching sync.WaitGroup
	cctx, stopCatching := context.WithCancel(ctx)
	catching.Go(func() { n.catchUp(cctx) })
	defer catching.Wait()
	defer stopCatching()

	var handled uint64 // last epoch led by this Run
	for {
		if ctx.Err() != nil {
			return nil
		}
		if n.isClosed() {
			return fmt.Errorf("run: %w", ErrClosed)
		}
		n.mu.Lock()
		leader, epoch := n.raftLeader, n.epoch
		n.mu.Unlock()
		if leader && epoch != handled {
			handled = epoch
			n.leadTerm(ctx, epoch)
			continue
		}
		select {
		case <-ctx.Done():
		case <-n.closed:
		case <-n.changed:
		}
	}
}

// leadTerm handles one leadership epoch; it returns once the epoch is over
// (step-down, Close or ctx done) and every leader task has returned.
func (n *Node) leadTerm(ctx context.Context, epoch uint64) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.mu.Lock()
	if !n.raftLeader || n.epoch != epoch || n.isClosed() {
		n.mu.Unlock()
		return
	}
	n.termCancel, n.termEpoch = cancel, epoch
	tasks := slices.Clone(n.tasks)
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		if n.termEpoch == epoch {
			n.termCancel = nil
		}
		n.readyTerm.Store(0)
		n.mu.Unlock()
	}()

	// Read the term before the barrier: if the barrier succeeds, it
	// committed in this term or a later one; ReadIndex only trusts
	// readiness while CurrentTerm still equals it, so a later one is
	// merely conservative.
	term := n.raft.CurrentTerm()
	start := time.Now()
	if err := n.barrier(tctx); err != nil {
		if tctx.Err() == nil {
			n.logger.Warn("leader barrier failed; waiting for step-down", "term", term, "error", err)
		}
		<-tctx.Done()
		return
	}
	n.mu.Lock()
	if !n.raftLeader || n.epoch != epoch || tctx.Err() != nil {
		n.mu.Unlock()
		return
	}
	n.readyTerm.Store(term)
	n.caughtUp.Store(true) // the barrier applied every committed entry
	n.mu.Unlock()
	n.logger.Info("leader ready", "term", term, "barrier", time.Since(start), "applied_index", n.fsm.appliedIndex())

	n.publishOwnMeta(tctx)

	var wg sync.WaitGroup
	for _, t := range tasks {
		wg.Go(func() {
			n.logger.Info("leader task started", "task", t.name, "term", term)
			err := t.fn(tctx)
			switch {
			case tctx.Err() != nil:
				n.logger.Info("leader task stopped", "task", t.name, "term", term)
			case err != nil:
				n.logger.Error("leader task failed; not restarted until next term", "task", t.name, "term", term, "error", err)
			default:
				n.logger.Info("leader task returned", "task", t.name, "term", term)
			}
		})
	}
	<-tctx.Done()
	n.readyTerm.Store(0)
	wg.Wait()
	n.logger.Info("leader term over", "term", term)
}

// barrier issues raft barriers until one succeeds in this leadership, the
// leadership ends, or ctx is done. A successful barrier means every entry
// committed before it, including all previous terms', has been applied.
func (n *Node) barrier(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		err := n.wait(ctx, n.raft.Barrier(enqueueTimeout))
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil,
			errors.Is(err, errWaitClosed),
			errors.Is(err, raft.ErrRaftShutdown),
			errors.Is(err, raft.ErrNotLeader),
			errors.Is(err, raft.ErrLeadershipLost):
			return fmt.Errorf("barrier: %w", err)
		}
		n.logger.Warn("leader barrier failed; retrying", "error", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("barrier: %w", ctx.Err())
		case <-t.C:
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// publishOwnMeta replicates this node's API address if the replicated
// table lacks it or holds a different one. Failure is logged; the next
// ready leadership retries.
func (n *Node) publishOwnMeta(ctx context.Context) {
	if n.fsm.apiAddr(n.cfg.NodeID) == n.cfg.APIAddr {
		return
	}
	if err := n.publishMeta(ctx, n.cfg.NodeID, n.cfg.APIAddr); err != nil {
		n.logger.Warn("could not publish own API address", "api_addr", n.cfg.APIAddr, "error", err)
		return
	}
	n.logger.Info("published own API address", "api_addr", n.cfg.APIAddr)
}

// publishMeta proposes a node-metadata entry and waits for it to apply.
func (n *Node) publishMeta(ctx context.Context, id, apiAddr string) error {
	data, err := encodeMeta(id, apiAddr)
	if err != nil {
		return err
	}
	res, err := n.propose(ctx, "publish node metadata", data)
	if err != nil {
		return err
	}
	if err, ok := res.Response.(error); ok {
		return fmt.Errorf("publish node metadata: %w", err)
	}
	return nil
}

// TransferLeadership asks this leader to hand leadership to the most
// up-to-date voter and step down (a node that must stop serving, e.g. its
// state diverged). It fails on a follower or when no other voter can take
// over.
func (n *Node) TransferLeadership(ctx context.Context) error {
	if err := n.wait(ctx, n.raft.LeadershipTransfer()); err != nil {
		return fmt.Errorf("transfer leadership: %w", err)
	}
	return nil
}

// TransferLeadershipTo is TransferLeadership to the voter id at raftAddr.
func (n *Node) TransferLeadershipTo(ctx context.Context, id, raftAddr string) error {
	if err := n.wait(ctx, n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(raftAddr))); err != nil {
		return fmt.Errorf("transfer leadership to %s: %w", id, err)
	}
	return nil
}
