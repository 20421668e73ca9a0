package system_test

// Clock jumps and slow or read-only disks on one node (issue 18). The
// clock and the disk speed are injected through the trustfed_faults build
// (internal/faultinject); a read-only Raft volume is a tmpfs remounted
// read-only. docs/reliability.md says what each proves.

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/registry/decision"
	"google.golang.org/grpc/status"
)

// checkSample is what the checks sent to one node during a fault got.
type checkSample struct {
	sent, answered int
	// maxSkew is the largest distance between an answer's decided_at and
	// the real time it came back.
	maxSkew time.Duration
	// outside counts answers whose decided_at is outside the window the
	// replicas vouch for ([-MaxDecisionAge, +MaxDecisionLead] around the
	// batch's time), taken around the real time.
	outside int
	// unverified counts answers that do not verify at the real time.
	unverified int
	refusals   map[string]int // by code and message prefix
}

func (c checkSample) String() string {
	return fmt.Sprintf("%d/%d answered, decided_at off by at most %s, %d outside the window, %d not verifying, refusals %v",
		c.answered, c.sent, c.maxSkew.Round(time.Millisecond), c.outside, c.unverified, c.refusals)
}

// sampleChecks sends the prober's check to every node in ids in turn for
// d, each with a 1 s budget, and sorts the outcomes by node.
func sampleChecks(t *testing.T, w *workload, keys attestation.DecisionKeys, d time.Duration, ids ...string) map[string]*checkSample {
	t.Helper()
	out := map[string]*checkSample{}
	for _, id := range ids {
		out[id] = &checkSample{refusals: map[string]int{}}
	}
	for end := time.Now().Add(d); time.Now().Before(end); {
		for _, id := range ids {
			s := out[id]
			s.sent++
			resp, err := w.probeCheckResp(context.Background(), id, availabilityBudget)
			if err != nil {
				st := status.Convert(err)
				msg := st.Message()
				if i := strings.IndexAny(msg, ":("); i > 0 {
					msg = msg[:i]
				}
				s.refusals[st.Code().String()+" "+msg]++
				continue
			}
			s.answered++
			now := time.Now()
			skew := resp.DecidedAt.AsTime().Sub(now)
			if skew.Abs() > s.maxSkew {
				s.maxSkew = skew.Abs()
			}
			if skew > decision.MaxDecisionLead || skew < -decision.MaxDecisionAge {
				s.outside++
			}
			if _, err := client.VerifyDecision(resp, keys, now); err != nil {
				s.unverified++
				s.refusals["unverified "+err.Error()]++
			}
		}
	}
	return out
}

// Clock jumps: one follower's wall clock jumps 30 s ahead, then 30 s
// behind, then the leader's jumps 30 s ahead, under the workload. The
// healthy nodes keep answering (after the leader hands leadership over, in
// the last step); the node whose clock is off answers nothing stamped
// outside the window. Raft's
// timers run on the monotonic clock and are unaffected; what moves is every
// wall-clock stamp the node makes (decided_at, the audit batch's time, token
// and passport expiry, the cosigner's window).
func TestFaultsClockJump(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{inject: true})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)
	keys, err := f.cluster.clients["n1"].Keys(ctxT(t))
	require.NoError(t, err)

	leader := f.waitLeader(t, "", f.ids...)
	follower := f.others(leader)[0]
	steps := []struct {
		id     string
		role   string
		offset time.Duration
	}{{follower, "follower", 30 * time.Second}, {follower, "follower", -30 * time.Second}, {leader, "leader", 30 * time.Second}}
	for _, step := range steps {
		what := fmt.Sprintf("clock %+v on %s (the %s)", step.offset, step.id, step.role)
		end := f.fault(what)
		f.setClock(t, step.id, step.offset)
		if step.role == "leader" {
			// The replicas refuse batches stamped off their own clocks
			// (Cosigner.checkBatchTime), so while this node leads no
			// decision is certified anywhere. Its clock check
			// (server/clockcheck.go) finds a majority of the voters
			// refusing its stamps and hands leadership over: the others
			// then answer again, with its clock still off.
			t0 := time.Now()
			testutil.Eventually(t, 15*time.Second, "the leader with a clock off hands leadership over", func() error {
				if l := f.waitLeader(t, "", f.ids...); l == step.id {
					return fmt.Errorf("%s still leads", l)
				}
				return nil
			})
			t.Logf("%s: leadership moved %s after the jump", what, time.Since(t0).Round(time.Millisecond))
			require.NoError(t, logContains(f.cluster.servers[step.id], "this leader's clock is off from a majority of the voters"), "%s logs why it handed leadership over", step.id)
		}
		got := sampleChecks(t, w, keys, 3*time.Second, f.ids...)
		for _, id := range sortedKeys(got) {
			t.Logf("%s: checks on %s: %s", what, id, got[id])
		}
		for _, id := range f.ids {
			s := got[id]
			require.Zero(t, s.unverified, "%s: %s answered a decision that does not verify", what, id)
			for r, n := range s.refusals {
				require.True(t, strings.HasPrefix(r, "Unavailable "), "%s: %s refused %d checks with %q: a skewed clock must give a clear, retryable refusal", what, id, n, r)
			}
			require.Zero(t, s.outside, "%s: %s answered a decision stamped outside the window the replicas vouch for", what, id)
			if id != step.id {
				require.GreaterOrEqual(t, 2*s.answered, s.sent, "%s: the healthy node %s keeps answering checks", what, id)
			}
		}
		f.setClock(t, step.id, 0)
		end()
		for _, id := range f.ids {
			require.NoError(t, w.awaitCheck(t, id), "%s answers checks once its clock is back", id)
		}
	}
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A slow disk: every Raft log and stable store write of the leader takes
// 100 ms longer (an fsync that slow) for a while, under the workload. The
// cluster keeps serving, slower or through a new leader; the history stays
// linearizable.
func TestFaultsSlowDisk(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{inject: true})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)
	before := w.summary()

	slow := f.waitLeader(t, "", f.ids...)
	end := f.fault("100 ms per Raft write on " + slow + " (the leader)")
	f.setWriteDelay(t, slow, 100*time.Millisecond)
	t0, start := time.Now(), w.summary()
	w.waitProgress(t, 40, 60*time.Second)
	for _, id := range f.ids {
		require.NoError(t, w.awaitCheck(t, id), "%s answers checks while %s's disk is slow", id, slow)
	}
	during, d := w.summary(), time.Since(t0)
	leaderNow := f.waitLeader(t, "", f.ids...)
	f.setWriteDelay(t, slow, 0)
	end()
	require.Positive(t, during.answered-start.answered, "the prober's checks are answered while %s's disk is slow", slow)
	t1 := time.Now()
	w.waitProgress(t, 60, 30*time.Second)
	after, d2 := w.summary(), time.Since(t1)
	t.Logf("slow disk on %s for %s: leader at the end %s; operations %.0f/s (before the fault %d in total), %.0f/s after; probes answered during the fault %d of %d",
		slow, d.Round(time.Millisecond), leaderNow, float64(during.ops-start.ops)/d.Seconds(), before.ops, float64(after.ops-during.ops)/d2.Seconds(),
		during.answered-start.answered, during.probes-start.probes)
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
}

// An unwritable data dir that is not full: the leader's Raft volume (a
// tmpfs) turned read-only. root ignores file modes, so chmod would prove
// nothing; and Linux refuses to remount a file system read-only while a
// process holds a file on it open for writing (EBUSY), which the running
// node does (raft.db), so the volume turns read-only across a crash: the
// leader is killed, its volume remounted read-only, and it is started
// again. It must refuse to start, saying why; the others elect and serve;
// once remounted read-write it starts, catches up and serves again.
func TestFaultsReadOnlyDisk(t *testing.T) {
	skipFaults(t)
	f := startFaultCluster(t, faultOptions{before: func(id, dataDir string) {
		mountTmpfs(t, filepath.Join(dataDir, "raft"), 64<<20)
	}})
	w := newWorkload(t, f, seedFor(t), "n1")
	w.start(4)
	w.waitProgress(t, 20, 30*time.Second)
	ro := f.waitLeader(t, "", f.ids...)
	rest := f.others(ro)
	dir := filepath.Join(f.dataDir(ro), "raft")

	err := remountErr(dir, true)
	require.ErrorIs(t, err, syscall.EBUSY, "a live read-only remount under the running node is refused by the kernel")

	end := f.fault("raft volume read-only on " + ro)
	w.setTargets(rest...)
	f.kill(ro)
	testutil.Eventually(t, 10*time.Second, "remount "+dir+" read-only once "+ro+" is gone", func() error { return remountErr(dir, true) })
	t.Cleanup(func() { _ = remountErr(dir, false) }) // before the unmount (cleanups run last-in first-out)
	t.Logf("killed %s (the leader) and remounted its Raft volume read-only", ro)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := f.cluster.servers[ro]
	cmd := exec.CommandContext(ctx, srv.Bin, append([]string{"server", "-data-dir", srv.DataDir}, f.restartArgs(t, ro)...)...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s must refuse to start on a read-only Raft volume; output:\n%s", ro, out)
	require.Contains(t, string(out), "read-only file system", "%s says why it cannot start", ro)
	require.Contains(t, string(out), "error: start raft: open raft store in DataDir", "%s names what it could not do", ro)
	t.Logf("%s on a read-only volume: %v; %s", ro, err, lastLine(out))

	f.waitLeader(t, ro, rest...)
	for _, id := range rest {
		require.NoError(t, w.awaitCheck(t, id), "%s keeps answering checks", id)
	}
	w.waitProgress(t, 30, 30*time.Second)

	require.NoError(t, remountErr(dir, false))
	f.restart(t, ro)
	end()
	require.NoError(t, w.awaitCheck(t, ro), "%s serves again once its volume is writable", ro)
	w.setTargets()
	w.waitProgress(t, 20, 30*time.Second)
	w.finish(t, f.ids...)
}

// lastLine is the last non-empty line of b.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// remountErr remounts the tmpfs at dir read-only or read-write.
func remountErr(dir string, readOnly bool) error {
	flags := uintptr(syscall.MS_REMOUNT | syscall.MS_NOSUID | syscall.MS_NODEV)
	if readOnly {
		flags |= syscall.MS_RDONLY
	}
	if err := syscall.Mount("", dir, "", flags, ""); err != nil {
		return fmt.Errorf("remount %s (read-only %v): %w", dir, readOnly, err)
	}
	return nil
}
