package consensus

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitTimeout bounds every condition a test waits for.
const waitTimeout = 15 * time.Second

// promoteAfter is the tests' promotion stabilisation period.
const promoteAfter = 200 * time.Millisecond

// ---- test state machine ---------------------------------------------------

// kvSM is a tiny deterministic key/value state machine: "set k v".
type kvSM struct {
	mu       sync.Mutex
	data     map[string]string
	last     uint64 // index of the last applied command
	restores int    // number of Restore calls
}

func newKV() *kvSM { return &kvSM{data: map[string]string{}} }

func (s *kvSM) Apply(index uint64, cmd []byte) any {
	f := strings.Fields(string(cmd))
	if len(f) != 3 || f[0] != "set" {
		return fmt.Errorf("bad command %q", cmd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[f[1]] = f[2]
	s.last = index
	return "ok"
}

func (s *kvSM) Snapshot() (Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, err := json.Marshal(s.data)
	if err != nil {
		return nil, err
	}
	return kvSnapshot(b), nil
}

func (s *kvSM) Restore(r io.Reader) error {
	data := map[string]string{}
	if err := json.NewDecoder(r).Decode(&data); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = data
	s.restores++
	return nil
}

func (s *kvSM) restoreCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restores
}

func (s *kvSM) get(k string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[k]
}

func (s *kvSM) all() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.data)
}

type kvSnapshot []byte

func (k kvSnapshot) Persist(w io.Writer) error { _, err := w.Write(k); return err }
func (k kvSnapshot) Release()                  {}

// ---- fake leader client ---------------------------------------------------

// directory is an in-process LeaderClient: it finds the leader's *Node by
// API address and calls its ReadIndex directly.
type directory struct {
	mu    sync.Mutex
	nodes map[string]*Node
}

func (d *directory) set(apiAddr string, n *Node) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nodes[apiAddr] = n
}

func (d *directory) ReadIndex(ctx context.Context, apiAddr string) (uint64, error) {
	n, err := d.node(apiAddr)
	if err != nil {
		return 0, err
	}
	return n.ReadIndex(ctx)
}

// Progress implements ProgressClient.
func (d *directory) Progress(_ context.Context, apiAddr string) (Progress, error) {
	n, err := d.node(apiAddr)
	if err != nil {
		return Progress{}, err
	}
	return n.Progress(), nil
}

func (d *directory) node(apiAddr string) (*Node, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nodes[apiAddr]
	if n == nil || n.isClosed() {
		return nil, fmt.Errorf("no node at %s", apiAddr)
	}
	return n, nil
}

// ---- logs -----------------------------------------------------------------

// logSink collects a test's logs and prints them only if the test failed.
type logSink struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.buf.Write(p)
	}
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	t.Helper()
	s := &logSink{}
	t.Cleanup(func() { // registered first, so it runs after every node closed
		s.mu.Lock()
		defer s.mu.Unlock()
		s.done = true
		if t.Failed() {
			t.Logf("node logs:\n%s", s.buf.String())
		}
	})
	return slog.New(slog.NewTextHandler(s, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// ---- cluster --------------------------------------------------------------

// cluster starts real nodes on loopback TCP in t.TempDir().
type cluster struct {
	t      *testing.T
	logger *slog.Logger
	dir    *directory
	base   string
	tls    map[string]*tls.Config // per node ID, optional
	tweak  func(*Config)
}

func newCluster(t *testing.T) *cluster {
	return &cluster{
		t:      t,
		logger: testLogger(t),
		dir:    &directory{nodes: map[string]*Node{}},
		base:   t.TempDir(),
		tls:    map[string]*tls.Config{},
	}
}

// testNode is a running node plus what is needed to stop and restart it.
type testNode struct {
	*Node
	id, api, dataDir string
	kv               *kvSM
	stop             func()
}

// config returns the test configuration of node id (small timeouts).
func (c *cluster) config(id, bind string, bootstrap bool, kv *kvSM) Config {
	cfg := Config{
		NodeID:             id,
		DataDir:            filepath.Join(c.base, id),
		BindAddr:           bind,
		APIAddr:            "api-" + id + ".test:443",
		Bootstrap:          bootstrap,
		StateMachine:       kv,
		LeaderClient:       c.dir,
		Progress:           c.dir,
		TLS:                c.tls[id],
		Logger:             c.logger,
		HeartbeatTimeout:   250 * time.Millisecond,
		ElectionTimeout:    250 * time.Millisecond,
		LeaderLeaseTimeout: 200 * time.Millisecond,
		CommitTimeout:      10 * time.Millisecond,
		// promoteAfter, short: joined nodes become voters quickly.
		PromotionStabilization: promoteAfter,
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	return cfg
}

// start creates a node, runs it and registers its cleanup.
func (c *cluster) start(id string, bootstrap bool) *testNode {
	return c.startAt(id, "127.0.0.1:0", bootstrap, nil)
}

// startAt starts node id bound to bind; tasks are registered before Run.
func (c *cluster) startAt(id, bind string, bootstrap bool, register func(*Node)) *testNode {
	t := c.t
	t.Helper()
	kv := newKV()
	cfg := c.config(id, bind, bootstrap, kv)
	n, err := New(cfg)
	require.NoError(t, err)
	if register != nil {
		register(n)
	}
	c.dir.set(cfg.APIAddr, n)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- n.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-runErr:
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Errorf("node %s: Run: %v", id, err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("node %s: Run did not return after cancel", id)
			}
			require.NoError(t, n.Close())
		})
	}
	t.Cleanup(stop)
	return &testNode{Node: n, id: id, api: cfg.APIAddr, dataDir: cfg.DataDir, kv: kv, stop: stop}
}

// restart starts a stopped node again from its data dir at its old address.
func (c *cluster) restart(old *testNode) *testNode {
	c.t.Helper()
	addr := old.RaftAddr()
	old.stop()
	return c.startAt(old.id, addr, false, nil)
}

// followers is nodes without leader, in their order.
func followers(leader *testNode, nodes ...*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

// waitLeader waits until exactly one of nodes is a ready leader.
func waitLeader(t *testing.T, nodes ...*testNode) *testNode {
	t.Helper()
	var leader *testNode
	require.Eventually(t, func() bool {
		leader = nil
		for _, n := range nodes {
			if n.IsLeader() {
				if leader != nil {
					return false
				}
				leader = n
			}
		}
		return leader != nil
	}, waitTimeout, 10*time.Millisecond, "no ready leader among nodes")
	return leader
}

// retryOnLeader runs op on whichever node is the ready leader, retrying
// while leadership settles, until op succeeds or waitTimeout passes.
func retryOnLeader(t *testing.T, what string, nodes []*testNode, op func(context.Context, *testNode) error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		leader := waitLeader(t, nodes...)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := op(ctx, leader)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// apply proposes cmd through the ready leader. "set" commands are
// idempotent, so retrying an unknown outcome is harmless here.
func apply(t *testing.T, cmd string, nodes ...*testNode) ApplyResult {
	t.Helper()
	var res ApplyResult
	retryOnLeader(t, "apply "+cmd, nodes, func(ctx context.Context, l *testNode) error {
		var err error
		res, err = l.Apply(ctx, []byte(cmd))
		return err
	})
	require.Equal(t, "ok", res.Response, "apply %q", cmd)
	return res
}

// join adds n as a non-voter through the ready leader and waits until the
// leader has promoted it to voter.
func join(t *testing.T, n *testNode, nodes ...*testNode) {
	t.Helper()
	retryOnLeader(t, "join "+n.id, nodes, func(ctx context.Context, l *testNode) error {
		_, err := l.AddNonvoter(ctx, n.id, n.RaftAddr(), n.api)
		return err
	})
	waitSuffrage(t, n.id, true, nodes...)
}

// waitSuffrage waits until the ready leader among nodes lists id as a
// voter (or a non-voter).
func waitSuffrage(t *testing.T, id string, voter bool, nodes ...*testNode) {
	t.Helper()
	require.Eventually(t, func() bool {
		s, ok := serverOn(t, waitLeader(t, nodes...), id)
		return ok && s.Voter == voter
	}, waitTimeout, 10*time.Millisecond, "%s never became voter=%v", id, voter)
}

// serverOn is the member id as node n's configuration lists it.
func serverOn(t *testing.T, n *testNode, id string) (Server, bool) {
	t.Helper()
	servers, err := n.Servers(ctxT(t))
	if err != nil {
		return Server{}, false
	}
	for _, s := range servers {
		if s.ID == id {
			return s, true
		}
	}
	return Server{}, false
}

// threeNodes starts n1 (bootstrap) and joins n2 and n3.
func (c *cluster) threeNodes() (n1, n2, n3 *testNode) {
	n1 = c.start("n1", true)
	waitLeader(c.t, n1)
	n2 = c.start("n2", false)
	n3 = c.start("n3", false)
	join(c.t, n2, n1)
	join(c.t, n3, n1)
	waitKnownLeader(c.t, n1, n2, n3)
	return n1, n2, n3
}

// waitKnownLeader waits until every node knows the same leader and its API
// address: a freshly joined node has heard nothing yet (ErrNoLeader).
func waitKnownLeader(t *testing.T, nodes ...*testNode) {
	t.Helper()
	require.Eventually(t, func() bool {
		var first Server
		for i, n := range nodes {
			l, ok := n.Leader()
			if !ok || l.APIAddr == "" || (i > 0 && l != first) {
				return false
			}
			first = l
		}
		return true
	}, waitTimeout, 10*time.Millisecond, "nodes do not agree on a known leader")
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func ctxWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// freePort returns a loopback port that was free a moment ago, for tests
// that must know a node's address before it starts.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	return port
}
