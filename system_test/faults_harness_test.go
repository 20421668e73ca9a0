package system_test

// The fault harness (issue 18): real `trustfed server` processes whose Raft
// and API (forwarding, cosigning) traffic between nodes flows through
// fault-injecting TCP proxies the test controls (testutil.Network), plus
// kill -9, SIGSTOP/SIGCONT and restarts from the data dir. The workload and
// the linearizability checker are in faults_workload_test.go and
// internal/faults; docs/reliability.md says what each scenario proves.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// faultCluster is a cluster of n real server processes behind proxies.
type faultCluster struct {
	*cluster
	ids      []string
	network  *testutil.Network
	raftP    map[string]*testutil.Proxy
	apiP     map[string]*testutil.Proxy
	raftBind map[string]string
	extra    []string
	// inject: the nodes run faultsBin, their clock offset and Raft write
	// delay in files under ctl (setClock, setWriteDelay).
	inject bool
	ctl    string

	mu     sync.Mutex
	pids   map[string]int
	paused map[string]bool
	faults []faultEvent
}

// faultEvent is one injected fault and when it was lifted (zero while on).
type faultEvent struct {
	what       string
	start, end time.Time
}

type faultOptions struct {
	nodes int
	// before is called with each node's data dir before it first starts
	// (e.g. to mount a small tmpfs there).
	before func(id, dataDir string)
	extra  []string // server flags of every node, every start
	// inject runs the nodes from the trustfed_faults build, so that the
	// test can move a node's wall clock and slow its Raft log writes.
	inject bool
}

// startFaultCluster starts an n-node cluster (3 by default) whose nodes
// reach each other only through the harness's proxies.
func startFaultCluster(t *testing.T, o faultOptions) *faultCluster {
	t.Helper()
	if o.nodes == 0 {
		o.nodes = 3
	}
	f := &faultCluster{ids: nodeIDs(o.nodes), network: testutil.NewNetwork(t), raftP: map[string]*testutil.Proxy{},
		apiP: map[string]*testutil.Proxy{}, raftBind: map[string]string{}, extra: o.extra, pids: map[string]int{}, paused: map[string]bool{},
		inject: o.inject, ctl: t.TempDir()}
	for _, id := range f.ids {
		f.raftP[id], f.apiP[id] = f.network.Proxy(f.candidates), f.network.Proxy(f.candidates)
		f.raftBind[id] = testutil.FreeAddr(t) // addrs.json names the advertised one
	}
	// Resume paused processes before the servers' own cleanup kills them
	// (cleanups run last-in first-out; SIGKILL works on a stopped process,
	// this only keeps the logs complete).
	t.Cleanup(f.resumeAll)
	hooks := clusterHooks{
		nodes:   o.nodes,
		before:  o.before,
		args:    f.proxyArgs,
		started: f.started,
	}
	if o.inject {
		hooks.binary = func(string) string { return faultsBin(t) }
		hooks.env = f.env
	}
	f.cluster = startClusterWith(t, hooks, o.extra...)
	return f
}

// env is node id's environment in the trustfed_faults build: the files
// that set its clock offset and Raft write delay.
func (f *faultCluster) env(id string) []string {
	return []string{"TRUSTFED_FAULT_CLOCK_FILE=" + filepath.Join(f.ctl, id+".clock"),
		"TRUSTFED_FAULT_FSYNC_DELAY_FILE=" + filepath.Join(f.ctl, id+".fsync")}
}

// setClock moves node id's wall clock to time.Now()+offset (0: back to
// the real time). The node sees it within 50 ms.
func (f *faultCluster) setClock(t *testing.T, id string, offset time.Duration) {
	t.Helper()
	f.writeCtl(t, id+".clock", offset.String())
}

// setWriteDelay makes every Raft log and stable store write of node id take
// d longer (0: off).
func (f *faultCluster) setWriteDelay(t *testing.T, id string, d time.Duration) {
	t.Helper()
	f.writeCtl(t, id+".fsync", d.String())
}

func (f *faultCluster) writeCtl(t *testing.T, name, value string) {
	t.Helper()
	if !f.inject {
		t.Fatal("clock and disk-speed faults need faultOptions.inject")
	}
	tmp := filepath.Join(f.ctl, name+".tmp")
	if err := os.WriteFile(tmp, []byte(value), 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(f.ctl, name)); err != nil { // atomic: never read half-written
		t.Fatalf("write %s: %v", name, err)
	}
}

func (f *faultCluster) proxyArgs(id string) []string {
	return []string{"-raft-addr", f.raftBind[id], "-advertise-raft", f.raftP[id].Addr(), "-advertise-api", f.apiP[id].Addr()}
}

func (f *faultCluster) started(id string, s *testutil.Server) {
	f.mu.Lock()
	f.pids[id] = s.PID()
	f.mu.Unlock()
	f.raftP[id].SetTarget(f.raftBind[id], s.PID())
	f.apiP[id].SetTarget(s.Addrs.GRPCAddr, s.PID())
}

func (f *faultCluster) candidates() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]int, 0, len(f.pids))
	for _, p := range f.pids {
		out = append(out, p)
	}
	return out
}

func (f *faultCluster) pid(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pids[id]
}

// fault records a fault injected now; the returned func records its end.
func (f *faultCluster) fault(what string) func() {
	f.mu.Lock()
	i := len(f.faults)
	f.faults = append(f.faults, faultEvent{what: what, start: time.Now()})
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.faults[i].end.IsZero() {
			f.faults[i].end = time.Now()
		}
	}
}

// faultLog is a copy of the faults injected so far.
func (f *faultCluster) faultLog() []faultEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]faultEvent(nil), f.faults...)
}

// kill kills node id with SIGKILL (kill -9): no shutdown, no flush.
func (f *faultCluster) kill(id string) {
	f.cluster.servers[id].Kill()
}

// restart starts node id again from its data dir at the same addresses,
// behind the same proxies (without -bootstrap or -join).
func (f *faultCluster) restart(t *testing.T, id string) {
	t.Helper()
	s := f.cluster.servers[id]
	s.Restart(f.restartArgs(t, id)...)
	f.started(id, s)
}

// restartArgs are node id's server flags for a restart from its data dir.
func (f *faultCluster) restartArgs(t *testing.T, id string) []string {
	t.Helper()
	s := f.cluster.servers[id]
	args := append([]string{"-node-id", id, "-raft-fast-timeouts", "-grpc-addr", s.Addrs.GRPCAddr, "-http-addr", s.Addrs.HTTPAddr},
		f.proxyArgs(id)...)
	return append(append(args, f.cluster.nodeFiles(t, id)...), f.extra...)
}

// pause stops node id with SIGSTOP: it holds its sockets and its state but
// answers nothing, as a process stalled by the OS or a long GC.
func (f *faultCluster) pause(t *testing.T, id string) {
	t.Helper()
	if err := syscall.Kill(f.pid(id), syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP %s: %v", id, err)
	}
	f.mu.Lock()
	f.paused[id] = true
	f.mu.Unlock()
}

// resume continues a paused node with SIGCONT.
func (f *faultCluster) resume(t *testing.T, id string) {
	t.Helper()
	if err := syscall.Kill(f.pid(id), syscall.SIGCONT); err != nil {
		t.Fatalf("SIGCONT %s: %v", id, err)
	}
	f.mu.Lock()
	delete(f.paused, id)
	f.mu.Unlock()
}

func (f *faultCluster) resumeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id := range f.paused {
		_ = syscall.Kill(f.pids[id], syscall.SIGCONT)
		delete(f.paused, id)
	}
}

// isolate cuts the nodes in side off from the others, both ways, on the
// Raft and the API proxies (existing connections included): a real
// partition, packets blackholed rather than connections reset. The side
// keeps its links within itself. heal ends it. A node restarted while cut
// off is a new process, connected again.
func (f *faultCluster) isolate(side ...string) {
	for _, id := range side {
		f.network.Isolate(f.pid(id))
	}
}

// delayAll delays every link between two nodes by d, both ways.
func (f *faultCluster) delayAll(d time.Duration) {
	for _, a := range f.ids {
		for _, b := range f.ids {
			if a != b {
				f.network.Delay(f.pid(a), f.pid(b), d)
			}
		}
	}
}

// heal restores every link.
func (f *faultCluster) heal() { f.network.Heal() }

// others are the nodes not in ids.
func (f *faultCluster) others(ids ...string) []string {
	skip := map[string]bool{}
	for _, id := range ids {
		skip[id] = true
	}
	var out []string
	for _, id := range f.ids {
		if !skip[id] {
			out = append(out, id)
		}
	}
	return out
}

// waitLeader waits for a ready leader among ids, other than not (if set).
func (f *faultCluster) waitLeader(t *testing.T, not string, among ...string) string {
	t.Helper()
	var leader string
	testutil.Eventually(t, 30*time.Second, "a ready leader among "+fmt.Sprint(among), func() error {
		for _, id := range among {
			st, err := f.cluster.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
			if err == nil && st.Ready && st.State == "Leader" && id != not {
				leader = id
				return nil
			}
		}
		return fmt.Errorf("no ready leader among %v (not %q)", among, not)
	})
	return leader
}

// dataDir is node id's data dir.
func (f *faultCluster) dataDir(id string) string { return f.cluster.servers[id].DataDir }

// mountTmpfs mounts a tmpfs of size bytes at dir (created), unmounted at
// test cleanup; it skips the test if mounting is not permitted here.
func mountTmpfs(t *testing.T, dir string, size int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatalf("mount point: %v", err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a tmpfs at %s (needs root or CAP_SYS_ADMIN): %v", dir, err)
	}
	t.Cleanup(func() {
		// Lazy: a server killed a moment ago may still hold a file open.
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
}

// fillDisk writes a file in dir until the file system is full and returns
// its path (removing it frees the space).
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatalf("filler: %v", err)
	}
	defer fh.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := fh.Write(buf); err != nil {
			if pe, ok := err.(*os.PathError); ok && pe.Err == syscall.ENOSPC {
				break
			}
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	// Smaller writes take the last pages.
	for _, n := range []int{64 << 10, 4 << 10, 512} {
		for {
			if _, err := fh.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// addNode starts a new node id behind new proxies, joining through node
// via, waits until it is a voter, and has the admins endorse its signing
// key (a node signs cosignatures with it).
func (f *faultCluster) addNode(t *testing.T, id, via string) {
	t.Helper()
	f.raftP[id], f.apiP[id] = f.network.Proxy(f.candidates), f.network.Proxy(f.candidates)
	f.raftBind[id] = testutil.FreeAddr(t)
	dir := filepath.Join(filepath.Dir(f.dataDir(f.ids[0])), id)
	args := append([]string{"-node-id", id, "-raft-fast-timeouts"}, loopbackPorts...)
	args = append(args, f.proxyArgs(id)...)
	args = append(args, f.cluster.nodeFiles(t, id)...)
	args = append(append(args, f.extra...), "-join", f.cluster.servers[via].Addrs.GRPCAddr)
	b, env := bin, []string(nil)
	if f.inject {
		b, env = faultsBin(t), f.env(id)
	}
	s := testutil.StartServerEnv(t, b, dir, env, args...)
	f.started(id, s)
	f.cluster.servers[id] = s
	f.cluster.clients[id] = dial(t, s, f.cluster.pki.CAFile, f.cluster.token)
	f.ids = append(f.ids, id)
	f.waitVoters(t, via, f.ids...)
	st, err := f.cluster.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	now := time.Now()
	f.cluster.admins.apply(t, client.EndorseNodeKey(id, st.NodePublicKey, now.Add(-time.Minute), now.Add(24*time.Hour)), f.cluster.clients[via])
	testutil.Eventually(t, 30*time.Second, id+"'s signing key endorsed", func() error {
		st, err := f.cluster.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		if !st.NodeKeyEndorsed {
			return fmt.Errorf("key %s not endorsed yet", st.NodeKeyId)
		}
		return nil
	})
}

// removeNode has the cluster remove node id (asked through via), stops
// its process and has the admins revoke its signing key, as
// docs/keys.md asks of an operator: a removed node's key that stays valid
// still counts towards the signatures a decision needs (after two
// replacements, 3 of 5 instead of 2 of 3), so one more node down would
// stop certification.
func (f *faultCluster) removeNode(t *testing.T, id, via string) {
	t.Helper()
	st, err := f.cluster.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	if err != nil {
		t.Fatalf("status of %s: %v", id, err)
	}
	var left *trustfedv1.LeaveResponse
	testutil.Eventually(t, 30*time.Second, "remove "+id, func() error {
		var err error
		left, err = f.cluster.clients[via].Cluster().Leave(ctxT(t), &trustfedv1.LeaveRequest{NodeId: id})
		return err
	})
	f.ids = slices.DeleteFunc(f.ids, func(n string) bool { return n == id })
	f.waitVoters(t, via, f.ids...)
	f.cluster.servers[id].Kill()
	if !st.NodeKeyEndorsed {
		return
	}
	if !slices.Contains(left.ValidKeyIds, st.NodeKeyId) {
		t.Fatalf("removing %s: the answer names its still-valid keys %v, not its key %s", id, left.ValidKeyIds, st.NodeKeyId)
	}
	since := time.Now()
	// Removing the leader starts an election: the change is retried
	// until the key shows revoked (a retry after an unknown outcome may
	// find it revoked already).
	testutil.Eventually(t, 30*time.Second, "revoke "+id+"'s key", func() error {
		keys, err := f.cluster.clients[via].Keys(ctxT(t))
		if err != nil {
			return err
		}
		if keys[st.NodeKeyId].GetRevokeTime() != nil {
			return nil
		}
		_, err = f.cluster.admins.try(t, client.RevokeNodeKey(id, st.NodeKeyId, since), f.cluster.clients[via])
		return err
	})
}

// waitVoters waits until node via reports exactly ids as the voters.
func (f *faultCluster) waitVoters(t *testing.T, via string, ids ...string) {
	t.Helper()
	want := slices.Sorted(slices.Values(ids))
	testutil.Eventually(t, 60*time.Second, fmt.Sprintf("voters %v", want), func() error {
		st, err := f.cluster.clients[via].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		var voters []string
		for _, m := range st.Members {
			if m.Suffrage == trustfedv1.Suffrage_SUFFRAGE_VOTER {
				voters = append(voters, m.NodeId)
			}
		}
		if slices.Sort(voters); !slices.Equal(voters, want) || len(st.Members) != len(want) {
			return fmt.Errorf("voters %v of %d members", voters, len(st.Members))
		}
		return nil
	})
}
