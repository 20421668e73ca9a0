package consensus

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

func TestNewValidatesConfig(t *testing.T) {
	valid := func() Config {
		return Config{
			NodeID:       "n1",
			DataDir:      t.TempDir(),
			BindAddr:     "127.0.0.1:0",
			APIAddr:      "api:1",
			StateMachine: newKV(),
			Logger:       testLogger(t),
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"node id", func(c *Config) { c.NodeID = "" }, "NodeID"},
		{"data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"bind addr", func(c *Config) { c.BindAddr = "" }, "BindAddr"},
		{"api addr", func(c *Config) { c.APIAddr = "" }, "APIAddr"},
		{"state machine", func(c *Config) { c.StateMachine = nil }, "StateMachine"},
		{"negative timeout", func(c *Config) { c.CommitTimeout = -1 }, "CommitTimeout"},
		{"lease above heartbeat", func(c *Config) {
			c.HeartbeatTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, time.Second
		}, "LeaderLeaseTimeout"},
		{"unadvertisable", func(c *Config) { c.BindAddr = "0.0.0.0:0" }, "advertis"},
		{"advertise unspecified", func(c *Config) { c.AdvertiseAddr = "0.0.0.0:7000" }, "AdvertiseAddr"},
		{"advertise no port", func(c *Config) { c.AdvertiseAddr = "raft.example" }, "AdvertiseAddr"},
		{"tls without cert", func(c *Config) { c.TLS = &tls.Config{} }, "TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.mutate(&cfg)
			n, err := New(cfg)
			if n != nil {
				n.Close()
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestSingleNodeBootstrap(t *testing.T) {
	c := newCluster(t)
	n := c.start("n1", true)
	waitLeader(t, n)
	ctx := ctxT(t)

	before := n.AppliedIndex()
	res, err := n.Apply(ctx, []byte("set a 1"))
	require.NoError(t, err)
	require.Equal(t, "ok", res.Response)
	require.Greater(t, res.Index, before)
	require.GreaterOrEqual(t, n.AppliedIndex(), res.Index)
	require.Equal(t, "1", n.kv.get("a"))

	res2, err := n.Apply(ctx, []byte("set b 2"))
	require.NoError(t, err)
	require.Greater(t, res2.Index, res.Index)

	// A malformed user command is a value, not an error of Apply.
	bad, err := n.Apply(ctx, []byte("nonsense"))
	require.NoError(t, err)
	require.Error(t, bad.Response.(error))

	idx, err := n.ReadIndex(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, idx, res2.Index)
	at, err := n.LinearizableRead(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, at, idx)

	// The leader publishes its own API address once ready.
	require.Eventually(t, func() bool {
		l, ok := n.Leader()
		return ok && l.ID == "n1" && l.APIAddr == n.api && l.RaftAddr == n.RaftAddr()
	}, waitTimeout, 10*time.Millisecond)

	st := n.Status()
	require.Equal(t, "n1", st.NodeID)
	require.Equal(t, raft.Leader.String(), st.State)
	require.True(t, st.Ready)
	require.True(t, st.HasLeader)
	require.Equal(t, time.Duration(0), st.LastContact)
	require.GreaterOrEqual(t, st.CommitIndex, st.AppliedIndex)
	require.GreaterOrEqual(t, st.LastLogIndex, st.CommitIndex)
	require.NotZero(t, st.Term)

	servers, err := n.Servers(ctx)
	require.NoError(t, err)
	require.Equal(t, []Server{{ID: "n1", RaftAddr: n.RaftAddr(), APIAddr: n.api, Voter: true, Leader: true, CaughtUp: true}}, servers)
}

func TestReadIndexRequiresReadyLeader(t *testing.T) {
	c := newCluster(t)
	kv := newKV()
	n, err := New(c.config("n1", "127.0.0.1:0", true, kv))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	ctx := ctxT(t)

	// Without Run, raft elects the node but nobody runs the barrier.
	require.Eventually(t, func() bool { return n.raft.State() == raft.Leader }, waitTimeout, 10*time.Millisecond)
	require.False(t, n.IsLeader())
	_, err = n.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrNotReady)
	_, err = n.LinearizableRead(ctx)
	require.ErrorIs(t, err, ErrNotReady)
	require.False(t, n.Status().Ready)

	// Writes do not need readiness.
	res, err := n.Apply(ctx, []byte("set k v"))
	require.NoError(t, err)

	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	require.Eventually(t, n.IsLeader, waitTimeout, 10*time.Millisecond)
	idx, err := n.ReadIndex(ctx)
	require.NoError(t, err)
	require.GreaterOrEqual(t, idx, res.Index)

	// Run exit clears readiness and returns nil.
	cancel()
	require.NoError(t, <-done)
	require.False(t, n.IsLeader())
	_, err = n.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrNotReady)
}

func TestFollowerErrors(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	leader := waitLeader(t, n1, n2, n3)
	ctx := ctxT(t)
	for _, f := range []*testNode{n1, n2, n3} {
		if f == leader {
			continue
		}
		_, err := f.Apply(ctx, []byte("set a 1"))
		require.ErrorIs(t, err, ErrNotLeader)
		_, err = f.ReadIndex(ctx)
		require.ErrorIs(t, err, ErrNotLeader)
		require.ErrorIs(t, f.AddVoter(ctx, "x", "127.0.0.1:1", "api-x.test:443"), ErrNotLeader)
		_, err = f.AddNonvoter(ctx, "x", "127.0.0.1:1", "api-x.test:443")
		require.ErrorIs(t, err, ErrNotLeader)
		require.ErrorIs(t, f.RemoveServer(ctx, "n1"), ErrNotLeader)
		require.False(t, f.IsLeader())
	}
}

func TestCloseUnblocksCallers(t *testing.T) {
	c := newCluster(t)
	gate := &gateKV{kvSM: newKV(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	cfg := c.config("n1", "127.0.0.1:0", true, nil)
	cfg.StateMachine = gate
	n, err := New(cfg)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- n.Run(runCtx) }()
	require.Eventually(t, n.IsLeader, waitTimeout, 10*time.Millisecond)

	// An Apply stuck in the state machine and a WaitApplied far ahead.
	applyErr := make(chan error, 1)
	go func() {
		_, err := n.Apply(context.Background(), []byte("set slow 1"))
		applyErr <- err
	}()
	<-gate.entered
	waitErr := make(chan error, 1)
	go func() { waitErr <- n.WaitApplied(context.Background(), 1<<40) }()

	closeErr := make(chan error, 1)
	go func() { closeErr <- n.Close() }()

	err = <-applyErr
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, err, ErrUnknownOutcome)
	require.ErrorIs(t, <-waitErr, ErrClosed)
	require.ErrorIs(t, <-runDone, ErrClosed)

	close(gate.release) // raft's shutdown waits for the apply goroutine
	require.NoError(t, <-closeErr)
	require.NoError(t, n.Close(), "Close is idempotent")

	ctx := ctxT(t)
	_, err = n.Apply(ctx, []byte("set a 1"))
	require.ErrorIs(t, err, ErrClosed)
	require.NotErrorIs(t, err, ErrUnknownOutcome)
	_, err = n.ReadIndex(ctx)
	require.ErrorIs(t, err, ErrClosed)
	_, err = n.LinearizableRead(ctx)
	require.Error(t, err)
	require.ErrorIs(t, n.AddVoter(ctx, "n2", "127.0.0.1:1", "api-n2.test:443"), ErrClosed)
	_, err = n.AddNonvoter(ctx, "n2", "127.0.0.1:1", "api-n2.test:443")
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, n.Snapshot(ctx), ErrClosed)
	_, err = n.Servers(ctx)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, n.Run(ctx), ErrClosed)
	require.False(t, n.IsLeader())
}

// gateKV blocks Apply of "set slow ..." until release is closed.
type gateKV struct {
	*kvSM
	entered chan struct{}
	release chan struct{}
}

func (g *gateKV) Apply(index uint64, cmd []byte) any {
	if string(cmd) == "set slow 1" {
		g.entered <- struct{}{}
		<-g.release
	}
	return g.kvSM.Apply(index, cmd)
}

func TestLeaderTasks(t *testing.T) {
	c := newCluster(t)
	type event struct {
		node    string
		started bool
	}
	events := make(chan event, 16)
	var mu sync.Mutex
	ctxs := map[string]context.Context{}
	register := func(id string) func(*Node) {
		return func(n *Node) {
			n.RegisterLeaderTask("probe", func(ctx context.Context) error {
				if !n.IsLeader() {
					t.Errorf("task started on %s, which is not a ready leader", id)
				}
				mu.Lock()
				ctxs[id] = ctx
				mu.Unlock()
				events <- event{id, true}
				<-ctx.Done()
				events <- event{id, false}
				return ctx.Err()
			})
			n.RegisterLeaderTask("failing", func(context.Context) error {
				return errors.New("boom") // logged, must not disturb the other task
			})
		}
	}
	n1 := c.startAt("n1", "127.0.0.1:0", true, register("n1"))
	require.Equal(t, event{"n1", true}, <-events)
	n2 := c.startAt("n2", "127.0.0.1:0", false, register("n2"))
	n3 := c.startAt("n3", "127.0.0.1:0", false, register("n3"))
	join(t, n2, n1)
	join(t, n3, n1)
	apply(t, "set x 1", n1, n2, n3)

	// Closing the leader cancels its task; a new leader starts its own.
	n1.stop()
	require.Equal(t, event{"n1", false}, <-events)
	mu.Lock()
	require.ErrorIs(t, ctxs["n1"].Err(), context.Canceled)
	mu.Unlock()
	next := <-events
	require.True(t, next.started)
	require.Contains(t, []string{"n2", "n3"}, next.node)
	leader := waitLeader(t, n2, n3)
	require.Equal(t, next.node, leader.id)
}
