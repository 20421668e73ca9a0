package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/trustfed/trustfed/internal/logging"
	"go.etcd.io/bbolt"
)

// Node is one member of the raft cluster. Create it with New, start its
// leadership loop with Run, stop it with Close.
type Node struct {
	cfg    Config
	logger *slog.Logger
	fsm    *fsm
	raft   *raft.Raft
	trans  *gatedTransport
	store  *watchedStore
	logs   raft.LogStore // the store behind its cache, as raft reads it
	snaps  raft.SnapshotStore

	// Leadership notifications: raft blocks on notifyCh, so watch (started
	// in New, stopped in Close) drains it for the node's whole life.
	notifyCh  chan bool
	stopWatch chan struct{}
	watchDone chan struct{}
	// Heartbeat observations from raft, drained by watch into peers.
	observeCh chan raft.Observation
	peers     *peerHealth
	// Leader observations from raft, drained by watch into leaders, which
	// follows the leader this node knows (leaderwatch.go); electionTimeout
	// bounds calls to it.
	leaderObs       chan raft.Observation
	leaders         leaderWatch
	electionTimeout time.Duration

	// nudgeDone is closed when the commit nudge loop (nudge.go) ends.
	nudgeDone chan struct{}

	// caughtUp: the state machine applied what the leader had committed
	// when this node started (catchup.go).
	caughtUp atomic.Bool

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error

	// readyTerm is the term whose barrier completed while this node led it;
	// 0 = not ready. See leadership.go.
	readyTerm atomic.Uint64

	// verify coalesces concurrent VerifyLeader rounds on the leader, and
	// leaderReads concurrent read-index RPCs on a follower (verify.go).
	verify      coalescer
	leaderReads coalescer

	mu         sync.Mutex
	raftLeader bool               // last value raft sent on notifyCh
	epoch      uint64             // incremented on every "became leader" notification
	termCancel context.CancelFunc // cancels the running leader term, if any
	termEpoch  uint64             // epoch termCancel belongs to
	tasks      []leaderTask
	running    bool          // a Run call is active
	changed    chan struct{} // capacity 1: leadership changed, wakes Run
}

// Server describes a cluster member. CaughtUp is the leader's view (false
// on other nodes): a voter its heartbeats reach, or a non-voter the
// promoter last found caught up.
type Server struct {
	ID, RaftAddr, APIAddr   string
	Voter, Leader, CaughtUp bool
}

// Status is a point-in-time summary of the node for health and admin
// endpoints.
type Status struct {
	NodeID, State                                 string
	Term, CommitIndex, AppliedIndex, LastLogIndex uint64
	Leader                                        Server
	HasLeader                                     bool
	LastContact                                   time.Duration
	// Ready: ready leader (IsLeader). CaughtUp: see CaughtUp.
	Ready, CaughtUp bool
	// StorageFault: why the node cannot write its Raft log ("" if it can).
	StorageFault string
}

// New opens the stores in cfg.DataDir, creates the transport and raft, and
// bootstraps a single-voter cluster if cfg.Bootstrap is set and there is no
// existing raft state. The node takes part in replication at once; Run must
// be started for it to become a ready leader.
func New(cfg Config) (_ *Node, err error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	// Raft passes its own "node" and struct values: write through the
	// handler that keeps one key each and prints values as text.
	logger = logging.UniqueLogger(logger).With("node", cfg.NodeID)

	notifyCh := make(chan bool, notifyBuffer)
	rc, err := cfg.raftConfig(logger, notifyCh)
	if err != nil {
		return nil, err
	}

	var cleanup []func() error
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				_ = cleanup[i]()
			}
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create DataDir: %w", err)
	}
	boltOpts := *bbolt.DefaultOptions
	boltOpts.Timeout = time.Second // fail instead of hanging on another process's file lock
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &boltOpts,
		NoSync:      false, // every log append is fsynced: acknowledged means durable
	})
	if err != nil {
		return nil, fmt.Errorf("open raft store in DataDir: %w", err)
	}
	store := &watchedStore{BoltStore: bolt, logger: logger.With("component", "raft-store")}
	cleanup = append(cleanup, store.Close)

	logs, err := raft.NewLogCache(logCacheSize, store)
	if err != nil {
		return nil, fmt.Errorf("raft log cache: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, snapshotsRetained,
		newHCLogger(logger, "raft-snapshot"))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store in DataDir: %w", err)
	}
	hasState, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}

	trans, err := newTransport(&cfg, logger)
	if err != nil {
		return nil, err
	}
	cleanup = append(cleanup, trans.Close)

	n := &Node{
		cfg:       cfg,
		logger:    logger,
		fsm:       newFSM(cfg.StateMachine, logger),
		trans:     trans,
		store:     store,
		logs:      logs,
		snaps:     snaps,
		notifyCh:  notifyCh,
		stopWatch: make(chan struct{}),
		watchDone: make(chan struct{}),
		closed:    make(chan struct{}),
		nudgeDone: make(chan struct{}),
		changed:   make(chan struct{}, 1),
		observeCh: make(chan raft.Observation, observeBuffer),
		peers:     newPeerHealth(),
		leaderObs: make(chan raft.Observation, observationBuffer),

		electionTimeout: rc.ElectionTimeout,
	}
	n.tasks = []leaderTask{{name: "promoter", fn: n.runPromoter}}
	go n.watch()
	cleanup = append(cleanup, func() error { close(n.stopWatch); <-n.watchDone; return nil })

	if err := recoverFromPeersFile(cfg.DataDir, rc, n.fsm, logs, store, snaps, trans, logger); err != nil {
		return nil, err
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	r.RegisterObserver(raft.NewObserver(n.observeCh, false, isHeartbeat))
	cleanup = append(cleanup, func() error { return r.Shutdown().Error() })
	r.RegisterObserver(raft.NewObserver(n.leaderObs, false, isLeaderChange))
	go n.runNudger()
	cleanup = append(cleanup, func() error { n.closeOnce.Do(func() { close(n.closed) }); <-n.nudgeDone; return nil })

	if cfg.Bootstrap && !hasState {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter,
			ID:       raft.ServerID(cfg.NodeID),
			Address:  trans.LocalAddr(),
		}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("bootstrap cluster: %w", err)
		}
		logger.Info("bootstrapped single-node cluster", "raft_addr", trans.LocalAddr())
	}
	logger.Info("raft node started", "raft_addr", trans.LocalAddr(), "api_addr", cfg.APIAddr,
		"existing_state", hasState, "tls", cfg.TLS != nil)
	return n, nil
}

// Close shuts raft down and closes the transport and stores. Outstanding
// and later calls return ErrClosed; Run returns. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.closed)
		n.stepDown()
		var errs []error
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("shutdown raft: %w", err))
		}
		close(n.stopWatch)
		<-n.watchDone
		<-n.nudgeDone
		// Before the store closes: no heartbeat writes a term after it.
		n.trans.closeHeartbeats()
		n.trans.CloseStreams()
		if err := n.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close transport: %w", err))
		}
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
		n.closeErr = errors.Join(errs...)
		n.logger.Info("raft node closed")
	})
	return n.closeErr
}

func (n *Node) isClosed() bool {
	select {
	case <-n.closed:
		return true
	default:
		return false
	}
}

// RaftAddr is the raft address this node advertises (the bound address
// when BindAddr used port 0).
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// AppliedIndex is the index of the last log entry applied to the local
// state machine (including node metadata and configuration entries, and
// the index restored from a snapshot).
func (n *Node) AppliedIndex() uint64 { return n.fsm.appliedIndex() }

// Leader reports the known leader, with its replicated API address ("" if
// not replicated yet).
func (n *Node) Leader() (Server, bool) {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return Server{}, false
	}
	return Server{
		ID:       string(id),
		RaftAddr: string(addr),
		APIAddr:  n.fsm.apiAddr(string(id)),
		Voter:    true,
		Leader:   true,
	}, true
}

// LastContact is 0 on the leader; on other nodes the time since the last
// contact with a leader, or the maximum duration if there never was one.
func (n *Node) LastContact() time.Duration {
	if n.raft.State() == raft.Leader {
		return 0
	}
	last := n.raft.LastContact()
	if last.IsZero() {
		return time.Duration(math.MaxInt64)
	}
	return time.Since(last)
}

// Status summarises the node.
func (n *Node) Status() Status {
	leader, ok := n.Leader()
	return Status{
		NodeID:       n.cfg.NodeID,
		State:        n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.appliedIndex(),
		LastLogIndex: n.raft.LastIndex(),
		Leader:       leader,
		HasLeader:    ok,
		LastContact:  n.LastContact(),
		Ready:        n.IsLeader(),
		CaughtUp:     n.CaughtUp(),
		StorageFault: errString(n.StorageFault()),
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
