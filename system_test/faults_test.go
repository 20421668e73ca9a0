package system_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/faults"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// skipFaults skips the fault scenarios in -short runs.
func skipFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and injects faults")
	}
}

// finish stops the workload, reads every organisation on every node in
// ids, logs the run's numbers and checks the history.
func (w *workload) finish(t *testing.T, ids ...string) report {
	t.Helper()
	w.halt()
	w.finalReads(t, ids...)
	r := w.summary()
	t.Logf("%s", r)
	w.checkHistory(t)
	return r
}

// Scenario 1: the leader is killed (kill -9) and restarted from its data
// dir, twice, under load. The history stays linearizable (no acknowledged
// write lost, no stale read or check), and the cluster serves again soon
// after each kill.
func TestFaultsLeaderKillsAndRestarts(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{})
	seed := seedFor(t)
	w := newWorkload(t, f, seed, "n1")
	w.start(4)
	for round := range 2 {
		w.waitProgress(t, 20, 30*time.Second)
		old := f.waitLeader(t, "", f.ids...)
		end := f.fault("kill -9 leader " + old)
		f.kill(old)
		f.waitLeader(t, old, f.others(old)...)
		w.waitProgress(t, 20, 30*time.Second)
		f.restart(t, old)
		end()
		t.Logf("round %d: killed and restarted leader %s", round, old)
	}
	w.waitProgress(t, 20, 30*time.Second)
	r := w.finish(t, f.ids...)
	require.Greater(t, r.ops, 100)
}

// cutOffBound is how soon a node cut off from the majority must stop
// answering linearizable reads and checks: with -raft-fast-timeouts a
// leader steps down after a leader lease (150 ms) without a quorum's
// contact, and every linearizable read or check needs a quorum anyway (a
// read index confirmed by a quorum's heartbeats, a check's certificate);
// the rest is slack for a loaded 2-core machine.
const cutOffBound = 2 * time.Second

// requireStopsServing asserts that every read and check sent to the nodes
// in side, begun later than cutOffBound after cut, is refused, for hold.
func requireStopsServing(t *testing.T, w *workload, cut time.Time, hold time.Duration, side ...string) {
	t.Helper()
	var firstRefusal = map[string]time.Duration{}
	for _, id := range side {
		for i := 0; ; i++ {
			start := time.Now()
			_, _, rerr := w.do(context.Background(), id, faults.Input{Kind: faults.OpRead, Org: i % faults.Orgs})
			_, cerr := w.check(context.Background(), id, 500*time.Millisecond)
			if rerr != nil && cerr != nil {
				firstRefusal[id] = time.Since(cut)
				break
			}
			require.Less(t, start.Sub(cut), cutOffBound, "%s, cut off, still answers (read: %v, check: %v)", id, rerr, cerr)
		}
	}
	t.Logf("cut off at %s; first refused both a read and a check after %v", cut.Format(time.TimeOnly), firstRefusal)
	answered := 0
	for end := time.Now().Add(hold); time.Now().Before(end); {
		for _, id := range side {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			if _, _, err := w.do(ctx, id, faults.Input{Kind: faults.OpRead}); err == nil {
				answered++
			}
			cancel()
			if _, err := w.check(context.Background(), id, 300*time.Millisecond); err == nil {
				answered++
			}
		}
	}
	require.Zero(t, answered, "nodes %v, cut off from the majority, answered linearizable reads or checks", side)
}

// partitionScenario cuts side (chosen by pick from the leader and the
// cluster's ids) off from the rest under load: side stops serving within
// cutOffBound; the rest, if a majority, elects a leader (if it lost it) and
// serves reads, writes and checks; after the heal every node serves again
// and the history is linearizable.
func partitionScenario(t *testing.T, nodes int, pick func(leader string, ids []string) []string) report {
	f := startFaultCluster(t, faultOptions{nodes: nodes})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)
	leader := f.waitLeader(t, "", f.ids...)
	side := pick(leader, f.ids)
	rest := f.others(side...)
	end := f.fault(fmt.Sprintf("partition %v | %v", side, rest))
	cut := time.Now()
	f.isolate(side...)
	t.Logf("leader %s; cut %v off from %v", leader, side, rest)

	f.waitLeader(t, "", rest...)
	for _, id := range rest {
		require.NoError(t, w.awaitCheck(t, id), "%s, in the majority, answers checks", id)
	}
	requireStopsServing(t, w, cut, 2*time.Second, side...)
	// The majority keeps taking writes and answering reads and checks.
	w.setTargets(rest...)
	w.waitProgress(t, 30, 30*time.Second)
	w.setTargets()

	f.heal()
	end()
	for _, id := range side {
		require.NoError(t, w.awaitCheck(t, id), "%s answers checks after the heal", id)
	}
	w.waitProgress(t, 20, 30*time.Second)
	return w.finish(t, f.ids...)
}

// Scenario 2: the leader of three is isolated from the majority (Raft and
// API links blackholed both ways): it stops answering linearizable reads
// and checks within cutOffBound, the two others elect a leader and serve,
// and the history over all three nodes, clients on both sides, stays
// linearizable.
func TestFaultsIsolatedLeader(t *testing.T) {
	skipFaults(t)
	partitionScenario(t, 3, func(leader string, _ []string) []string { return []string{leader} })
}

// Scenario 3: a five-node cluster split 2 | 3, the old leader and one
// follower on the minority side, clients on both: the minority stops
// serving, the majority elects and serves, and after the heal the minority
// catches up; the history stays linearizable.
func TestFaultsMinorityPartitionFiveNodes(t *testing.T) {
	skipFaults(t)
	partitionScenario(t, 5, func(leader string, ids []string) []string {
		for _, id := range ids {
			if id != leader {
				return []string{leader, id}
			}
		}
		return nil
	})
}

// Scenario 4: every node is killed (kill -9) at once under load and
// restarted from its data dir: every acknowledged write is there after the
// restart (the final reads on every node join the history, so a lost write
// is a linearizability violation), and nothing unacknowledged shows up
// half-done.
func TestFaultsFullClusterCrash(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 60, 60*time.Second)
	end := f.fault(fullCrash)
	for _, id := range f.ids {
		f.kill(id)
	}
	okBefore, _, _ := w.hist.Counts()
	for _, id := range f.ids {
		f.restart(t, id)
	}
	f.waitLeader(t, "", f.ids...)
	end()
	for _, id := range f.ids {
		require.NoError(t, w.awaitCheck(t, id), "%s answers checks after the restart", id)
	}
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
	t.Logf("%d operations acknowledged before the crash", okBefore)
	require.Zero(t, w.lostWrites(t, f.ids...), "acknowledged writes lost")
}

// Scenario 6: a follower paused (SIGSTOP) while the others commit far more
// than a snapshot threshold and trailing log: when it continues (SIGCONT)
// the leader no longer has the entries it lacks and sends its snapshot; the
// follower installs it, with the audit log, serves again, and its audit
// tree matches the leader's; the history stays linearizable.
func TestFaultsPausedFollowerCatchesUpBySnapshot(t *testing.T) {
	skipFaults(t)
	const threshold, trailing = 64, 16
	f := startFaultCluster(t, faultOptions{extra: []string{"-raft-snapshot-threshold", fmt.Sprint(threshold), "-raft-trailing-logs", fmt.Sprint(trailing)}})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)
	leader := f.waitLeader(t, "", f.ids...)
	paused := f.others(leader)[0]
	st, err := f.cluster.clients[leader].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	from := st.CommitIndex
	snapshots := logCount(t, f.cluster.servers[leader], "snapshot complete up to")

	end := f.fault("SIGSTOP follower " + paused)
	w.setTargets(f.others(paused)...)
	f.pause(t, paused)
	// Well past a snapshot and its trailing log on the leader.
	testutil.Eventually(t, 60*time.Second, "the leader snapshots past the paused follower", func() error {
		st, err := f.cluster.clients[leader].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		if n := logCount(t, f.cluster.servers[leader], "snapshot complete up to"); st.CommitIndex < from+2*threshold+trailing || n < snapshots+2 {
			return fmt.Errorf("commit index %d (paused at %d), %d snapshots since", st.CommitIndex, from, n-snapshots)
		}
		return nil
	})
	f.resume(t, paused)
	end()
	testutil.Eventually(t, 60*time.Second, paused+" installs the leader's snapshot", func() error {
		return logContains(f.cluster.servers[paused], "nstalled remote snapshot")
	})
	require.NoError(t, w.awaitCheck(t, paused), "%s answers checks after the snapshot", paused)
	w.setTargets()
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)

	// The audit log came with the snapshot: once quiet, the follower's tree
	// is the leader's (same size, same root).
	head := func(id string) (*trustfedv1.GetSignedTreeHeadResponse, error) {
		return f.cluster.clients[id].Audit().GetSignedTreeHead(ctxT(t), &trustfedv1.GetSignedTreeHeadRequest{})
	}
	testutil.Eventually(t, 30*time.Second, paused+"'s audit tree equals the leader's", func() error {
		l, err := head(leader)
		if err != nil {
			return err
		}
		p, err := head(paused)
		if err != nil {
			return err
		}
		if l.TreeSize != p.TreeSize || !bytes.Equal(l.RootHash, p.RootHash) {
			return fmt.Errorf("leader %d %x, %s %d %x", l.TreeSize, l.RootHash, paused, p.TreeSize, p.RootHash)
		}
		return nil
	})
}

// Scenario 7: the disk under one node's Raft log fills up (a small tmpfs
// mounted at <data-dir>/raft, filled with a file). The node fails loudly
// (its log says why) and answers no linearizable read or check it cannot
// back; the others keep serving; once the space is freed it catches up and
// serves again; the history stays linearizable.
func TestFaultsDiskFull(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{before: func(id, dataDir string) {
		mountTmpfs(t, filepath.Join(dataDir, "raft"), 64<<20)
	}})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)
	full := f.waitLeader(t, "", f.ids...)
	rest := f.others(full)
	end := f.fault("disk full on " + full)
	filler := fillDisk(t, filepath.Join(f.dataDir(full), "raft"))
	t.Logf("filled the Raft volume of %s (the leader)", full)

	testutil.Eventually(t, 30*time.Second, full+" says its disk is full", func() error {
		return logContains(f.cluster.servers[full], "no space left on device")
	})
	f.waitLeader(t, full, rest...)
	for _, id := range rest {
		require.NoError(t, w.awaitCheck(t, id), "%s keeps answering checks", id)
	}
	w.setTargets(rest...)
	w.waitProgress(t, 30, 30*time.Second)
	requireStopsServing(t, w, time.Now().Add(-cutOffBound), 2*time.Second, full)
	hc := httpsClient(t, f.cluster.pki.CAFile)
	code, reason := readyz(hc, f.cluster.servers[full].Addrs.HTTPAddr)
	t.Logf("%s, disk full: /readyz %d %q; log: %s", full, code, reason, grepLog(f.cluster.servers[full], "no space left", 3))
	require.Equal(t, http.StatusServiceUnavailable, code, "%s cannot persist its log: not ready", full)

	require.NoError(t, os.Remove(filler))
	freed := time.Now()
	end()
	require.NoError(t, w.awaitCheck(t, full), "%s serves again once the space is back", full)
	t.Logf("%s answered a check %s after the space was back", full, time.Since(freed).Round(time.Millisecond))
	w.setTargets()
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
}

// grepLog is the first n lines of srv's log that contain s.
func grepLog(srv *testutil.Server, s string, n int) []string {
	var out []string
	for _, l := range strings.Split(srv.Log(), "\n") {
		if strings.Contains(l, s) && len(out) < n {
			out = append(out, l)
		}
	}
	return out
}

// Slow and one-way links: every link between the nodes delayed by 50 ms
// (the cluster keeps serving, slower), then the leader's outgoing traffic
// dropped while it still hears the others (it must stop serving and a new
// leader take over); the history stays linearizable.
func TestFaultsSlowAndOneWayLinks(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)

	end := f.fault("50 ms delay on every link")
	f.delayAll(50 * time.Millisecond)
	w.waitProgress(t, 30, 60*time.Second)
	f.heal()
	end()

	leader := f.waitLeader(t, "", f.ids...)
	rest := f.others(leader)
	end = f.fault("drop everything " + leader + " sends")
	cut := time.Now()
	for _, id := range rest {
		f.network.Drop(f.pid(leader), f.pid(id))
	}
	f.waitLeader(t, leader, rest...)
	requireStopsServing(t, w, cut, 2*time.Second, leader)
	w.setTargets(rest...)
	w.waitProgress(t, 30, 30*time.Second)
	f.heal()
	end()
	w.setTargets()
	require.NoError(t, w.awaitCheck(t, leader), "%s serves again after the heal", leader)
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
}

// Membership changes under load: a fourth node joins (and is promoted, its
// key endorsed), a follower is removed, then the leader's own node is
// removed and replaced by a fifth, while the clients keep calling every
// member; the history over all of it is linearizable and every
// acknowledged level change is on every final member.
func TestFaultsMembershipChangesUnderLoad(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)

	end := f.fault("add n4")
	f.addNode(t, "n4", "n1")
	w.addNode(t, "n4")
	require.NoError(t, w.awaitCheck(t, "n4"), "n4 answers checks")
	end()
	w.waitProgress(t, 20, 30*time.Second)

	leader := f.waitLeader(t, "", f.ids...)
	follower := f.others(leader, "n4")[0]
	end = f.fault("remove follower " + follower)
	w.removeNode(follower)
	f.removeNode(t, follower, leader)
	end()
	w.waitProgress(t, 20, 30*time.Second)

	leader = f.waitLeader(t, "", f.ids...)
	via := f.others(leader)[0]
	end = f.fault("replace the leader's node " + leader + " by n5")
	w.removeNode(leader)
	f.removeNode(t, leader, via)
	f.waitLeader(t, leader, f.ids...)
	f.addNode(t, "n5", via)
	w.addNode(t, "n5")
	require.NoError(t, w.awaitCheck(t, "n5"), "n5 answers checks")
	end()
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
	require.Zero(t, w.lostWrites(t, f.ids...), "acknowledged writes lost")

	// The removed nodes' keys were revoked (removeNode, as docs/keys.md
	// asks): a decision needs a majority of the three current nodes, not
	// of every node that ever held a key, so one more node down does not
	// stop certification.
	keys, err := f.cluster.clients[f.ids[0]].Keys(ctxT(t))
	require.NoError(t, err)
	require.Equal(t, 2, attestation.Quorum(keys, time.Now()), "signatures a decision needs with %v the only nodes", f.ids)
}
