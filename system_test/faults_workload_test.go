package system_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/faults"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The workload's two organisations (model indices 0 and 1), enrolled at
// attested level 3; level changes stay within 1..3, so an organisation's
// level is its declared level and a check's effective level the lower of
// the two (the model in internal/faults).
var workloadOrgs = [faults.Orgs]string{"org-a", "org-b"}

// probeOrgs are the organisations the availability prober checks.
var probeOrgs = [2]string{"probe-a", "probe-b"}

const workloadAction = "task_send"

// workload runs concurrent clients against a faultCluster and records a
// history for the linearizability checker, and a prober that measures
// availability as a member with every node's address sees it.
type workload struct {
	f     *faultCluster
	seed  int64
	hist  *faults.History
	init  faults.State
	names atomic.Int64

	mu      sync.Mutex
	nodes   []string                  // the cluster's nodes, as the clients know them
	admins  map[string]*client.Client // an admin client per node
	members map[string]*client.Client // a member node of org-a, per node
	targets []string                  // if set, narrows the nodes the workers call
	probes  []probe
	errs    map[string]int // failed operations by kind and code
	sample  []string       // the first error of each kind and code
	applied []string       // admin changes acknowledged as applied

	member      *testutil.Member          // a member node of org-a, to dial new nodes as
	probeMember *testutil.Member          // a member node of probe-a, the prober's
	probers     map[string]*client.Client // the prober's client per node (w.mu)

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// probe is one availability sample: a check sent at at, answered (by any
// node) within the 1 s budget or not.
type probe struct {
	at       time.Time
	took     time.Duration
	answered bool
	lastErr  error // of a probe not answered: the last node's refusal
}

// seedFor is the run's seed: $TRUSTFED_FAULTS_SEED or the clock, logged.
func seedFor(t *testing.T) int64 {
	seed := time.Now().UnixNano()
	if s := os.Getenv("TRUSTFED_FAULTS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "TRUSTFED_FAULTS_SEED")
		seed = v
	}
	t.Logf("seed %d (set TRUSTFED_FAULTS_SEED to repeat)", seed)
	return seed
}

// newWorkload enrols the workload's organisations, their agreement and a
// member node, through node via.
func newWorkload(t *testing.T, f *faultCluster, seed int64, via string) *workload {
	t.Helper()
	admin := f.cluster.clients[via]
	accredit(t, admin, f.cluster.fed, f.cluster.admins)
	w := &workload{f: f, seed: seed, hist: faults.NewHistory(), nodes: slices.Clone(f.ids), admins: maps.Clone(f.cluster.clients)}
	for i, org := range workloadOrgs {
		o := enrol(t, admin, f.cluster.fed, org, 3)
		w.init[i] = faults.Org{Name: o.Name, Level: o.DeclaredLevel}
	}
	agree(t, admin, f.cluster.fed, workloadOrgs[0], workloadOrgs[1], workloadAction)
	w.members = f.cluster.memberClients(t, admin, workloadOrgs[0])
	w.member = testutil.EnrolMember(t, admin, f.cluster.fed, workloadOrgs[0], "")
	// The prober checks a pair nobody writes to: a check between
	// organisations whose levels change is refused (retryably) when a
	// change lands between its decision and its batch, which measures the
	// workload, not the faults.
	for _, org := range probeOrgs {
		enrol(t, admin, f.cluster.fed, org, 3)
	}
	agree(t, admin, f.cluster.fed, probeOrgs[0], probeOrgs[1], workloadAction)
	w.probeMember = testutil.EnrolMember(t, admin, f.cluster.fed, probeOrgs[0], "")
	w.probers = map[string]*client.Client{}
	for _, id := range f.ids {
		w.probers[id] = w.probeMember.Dial(t, baseConfig(f.cluster.servers[id], f.cluster.pki.CAFile))
	}
	// The first check certifies through every replica: wait until it works
	// everywhere, so the history starts on a settled cluster.
	for _, id := range f.ids {
		require.NoError(t, w.awaitCheck(t, id), id)
	}
	return w
}

func (w *workload) awaitCheck(t *testing.T, id string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := w.check(context.Background(), id, 2*time.Second)
		if err == nil || time.Now().After(deadline) {
			return err
		}
	}
}

// setTargets narrows the nodes the workers call (none: all).
func (w *workload) setTargets(ids ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.targets = ids
}

func (w *workload) pick(rng *rand.Rand) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.targets) > 0 {
		return w.targets[rng.IntN(len(w.targets))]
	}
	return w.nodes[rng.IntN(len(w.nodes))]
}

// addNode lets the clients call node id too.
func (w *workload) addNode(t *testing.T, id string) {
	t.Helper()
	member := w.member.Dial(t, baseConfig(w.f.cluster.servers[id], w.f.cluster.pki.CAFile))
	prober := w.probeMember.Dial(t, baseConfig(w.f.cluster.servers[id], w.f.cluster.pki.CAFile))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.admins[id], w.members[id], w.probers[id] = w.f.cluster.clients[id], member, prober
	w.nodes = append(w.nodes, id)
}

// removeNode stops the clients calling node id.
func (w *workload) removeNode(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nodes = slices.DeleteFunc(w.nodes, func(n string) bool { return n == id })
}

// clients are node id's admin and member clients.
func (w *workload) clients(id string) (admin, member *client.Client) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.admins[id], w.members[id]
}

// currentNodes are the nodes the clients know now.
func (w *workload) currentNodes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.nodes)
}

// start runs workers clients and the availability prober until stopAndCheck.
func (w *workload) start(workers int) {
	ctx, cancel := context.WithCancel(context.Background())
	w.stop = cancel
	for i := range workers {
		rng := rand.New(rand.NewPCG(uint64(w.seed), uint64(i)))
		w.wg.Go(func() { w.worker(ctx, rng) })
	}
	w.wg.Go(func() { w.prober(ctx) })
}

// opTimeout bounds each operation of the workers: long enough for an
// election, short enough to notice one.
const opTimeout = 3 * time.Second

func (w *workload) worker(ctx context.Context, rng *rand.Rand) {
	client := w.hist.Client()
	for ctx.Err() == nil {
		id := w.pick(rng)
		org := rng.IntN(faults.Orgs)
		var in faults.Input
		switch r := rng.IntN(10); {
		case r < 2:
			in = faults.Input{Kind: faults.OpRename, Org: org, Name: fmt.Sprintf("%s-%d", workloadOrgs[org], w.names.Add(1))}
		case r < 3:
			in = faults.Input{Kind: faults.OpSetLevel, Org: org, Level: uint32(1 + rng.IntN(3))}
		case r < 6:
			in = faults.Input{Kind: faults.OpRead, Org: org}
		default:
			in = faults.Input{Kind: faults.OpCheck}
		}
		call := w.hist.Call()
		out, change, err := w.do(ctx, id, in)
		if err != nil {
			w.tally(in.Kind, err)
		}
		switch {
		case err == nil:
			w.hist.Ok(client, in, call, out, faults.Meta{Node: id, Change: change})
			if in.Kind == faults.OpSetLevel {
				w.mu.Lock()
				w.applied = append(w.applied, change)
				w.mu.Unlock()
			}
		case ctx.Err() != nil && (in.Kind == faults.OpRead || in.Kind == faults.OpCheck):
			return // the run ended
		case in.Kind == faults.OpRead || in.Kind == faults.OpCheck || refusedBeforeProposal(err):
			w.hist.Failed()
		case in.Kind == faults.OpSetLevel && change == "":
			// The proposal failed: pending at worst, and nobody else
			// approves it, so it never applies.
			w.hist.Failed()
		default:
			// A write that timed out or lost its connection may still commit.
			w.hist.UnknownWith(client, in, call, faults.Meta{Node: id, Change: change})
			client = w.hist.Client()
		}
	}
}

// refusedBeforeProposal reports whether err certainly means the write had
// no effect: refused by validation or authorisation, never proposed.
func refusedBeforeProposal(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.NotFound, codes.FailedPrecondition, codes.ResourceExhausted:
		return true
	}
	return false
}

// tally counts a failed operation by kind and gRPC code.
func (w *workload) tally(k fmt.Stringer, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.errs == nil {
		w.errs = map[string]int{}
	}
	key := k.String() + " " + status.Code(err).String()
	if w.errs[key] == 0 {
		w.sample = append(w.sample, key+": "+err.Error())
	}
	w.errs[key]++
}

// do performs in on node id. For a level change it also returns the admin
// change's id once proposed.
func (w *workload) do(ctx context.Context, id string, in faults.Input) (faults.Output, string, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, _ := w.clients(id)
	org := workloadOrgs[in.Org]
	switch in.Kind {
	case faults.OpRename:
		_, err := c.Admin().UpdateOrganization(ctx, &trustfedv1.UpdateOrganizationRequest{OrganizationId: org, Name: in.Name})
		return faults.Output{}, "", err
	case faults.OpSetLevel:
		change := &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_SetDeclaredLevel{SetDeclaredLevel: &trustfedv1.SetDeclaredLevelChange{OrganizationId: org, Level: in.Level}}, Reason: "fault workload"}
		rec, err := c.ProposeAdminChange(ctx, w.f.cluster.admins[0], change, time.Hour)
		if err != nil {
			return faults.Output{}, "", fmt.Errorf("propose: %w", err)
		}
		id := rec.Id
		rec, err = c.ApproveAdminChange(ctx, w.f.cluster.admins[1], id)
		if err != nil {
			return faults.Output{}, id, fmt.Errorf("approve %s: %w", id, err)
		}
		if rec.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
			return faults.Output{}, id, fmt.Errorf("change %s %v after the second approval", id, rec.Status)
		}
		return faults.Output{}, id, nil
	case faults.OpRead:
		resp, err := c.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: org})
		if err != nil {
			return faults.Output{}, "", err
		}
		return faults.Output{Name: resp.Organization.Name, Level: resp.Organization.DeclaredLevel}, "", nil
	case faults.OpCheck:
		resp, err := w.check(ctx, id, opTimeout)
		if err != nil {
			return faults.Output{}, "", err
		}
		return faults.Output{Level: resp.EffectiveLevel}, "", nil
	}
	return faults.Output{}, "", fmt.Errorf("unknown operation %v", in.Kind)
}

func (w *workload) check(ctx context.Context, id string, timeout time.Duration) (*trustfedv1.CheckInteractionResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, member := w.clients(id)
	return member.Registry().CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: workloadOrgs[0], ToOrganizationId: workloadOrgs[1], Action: workloadAction})
}

// availabilityBudget is how soon a check must be answered to count as
// available.
const availabilityBudget = time.Second

// probe is one check of the prober's pair on node id.
func (w *workload) probeCheck(ctx context.Context, id string, timeout time.Duration) error {
	_, err := w.probeCheckResp(ctx, id, timeout)
	return err
}

// probeCheckResp is probeCheck with the answer.
func (w *workload) probeCheckResp(ctx context.Context, id string, timeout time.Duration) (*trustfedv1.CheckInteractionResponse, error) {
	w.mu.Lock()
	c := w.probers[id]
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Registry().CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: probeOrgs[0], ToOrganizationId: probeOrgs[1], Action: workloadAction})
}

// prober sends a check every 50 ms as a member that knows every node, the
// way the member gateway does (client/gateway, registries.do): it tries the
// node that answered last, then the others, each for at most 400 ms of
// the 1 s budget; when every node refused, it pauses (25 ms, doubling)
// and goes round again until the budget is spent.
func (w *workload) prober(ctx context.Context) {
	good := 0
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		start := time.Now()
		answered := false
		var lastErr error
		nodes := w.currentNodes()
		pause := 25 * time.Millisecond
	rounds:
		for {
			for i := 0; i < len(nodes); i++ {
				left := availabilityBudget - time.Since(start)
				if left <= 0 || ctx.Err() != nil {
					break rounds
				}
				id := nodes[(good+i)%len(nodes)]
				err := w.probeCheck(ctx, id, min(left, 400*time.Millisecond))
				if err != nil && ctx.Err() == nil {
					w.tally(probeKind{}, err)
					lastErr = fmt.Errorf("%s: %w", id, err)
				}
				if err == nil {
					answered, good = true, (good+i)%len(nodes)
					break rounds
				}
			}
			if availabilityBudget-time.Since(start) <= pause {
				break
			}
			select {
			case <-ctx.Done():
				break rounds
			case <-time.After(pause):
			}
			pause = min(2*pause, 200*time.Millisecond)
		}
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.probes = append(w.probes, probe{at: start, took: time.Since(start), answered: answered, lastErr: lastErr})
		w.mu.Unlock()
	}
}

// missedProbes are the probes not answered within the budget, in order.
func (w *workload) missedProbes() []probe {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []probe
	for _, p := range w.probes {
		if !p.answered {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].at.Before(out[j].at) })
	return out
}

// halt stops the clients and waits for them.
func (w *workload) halt() {
	w.stop()
	w.wg.Wait()
}

// finalReads reads both organisations on every node in ids (after the
// faults are over): they join the history, so a write acknowledged before
// and missing after (a lost write) is a violation.
func (w *workload) finalReads(t *testing.T, ids ...string) {
	t.Helper()
	client := w.hist.Client()
	for _, id := range ids {
		for org := range faults.Orgs {
			in := faults.Input{Kind: faults.OpRead, Org: org}
			var out faults.Output
			call := w.hist.Call()
			deadline := time.Now().Add(30 * time.Second)
			for {
				var err error
				out, _, err = w.do(context.Background(), id, in)
				if err == nil {
					break
				}
				require.True(t, time.Now().Before(deadline), "final read of %s on %s: %v", workloadOrgs[org], id, err)
				call = w.hist.Call()
			}
			w.hist.Ok(client, in, call, out, faults.Meta{Node: id})
		}
	}
}

// report is what a run measured.
type report struct {
	ops, unknown, failed    int
	faults                  int
	probes, answered        int
	duringFaults, answeredF int
	longestGap              time.Duration
	longestGapDuring        string    // the faults the longest gap overlapped
	longestGapFrom          time.Time // the answer before the longest gap
	longestGapTo            time.Time // the answer that ended it
	// The same, leaving out the probes during a full-cluster crash (no
	// registry answers then, by definition).
	probesNoCrash, answeredNoCrash int
	longestGapNoCrash              time.Duration
}

// fullCrash names the fault that takes every node down.
const fullCrash = "kill -9 every node"

func (r report) availability() float64 { return ratio(r.answered, r.probes) }
func (r report) availabilityDuringFaults() float64 {
	return ratio(r.answeredF, r.duringFaults)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func (r report) String() string {
	return fmt.Sprintf("operations %d (unknown outcome %d, refused %d); faults %d; checks answered within %s: %.2f%% of %d overall, %.2f%% of %d during faults; longest unavailability %s (%s)",
		r.ops, r.unknown, r.failed, r.faults, availabilityBudget, 100*r.availability(), r.probes,
		100*r.availabilityDuringFaults(), r.duringFaults, r.longestGap.Round(time.Millisecond), r.longestGapDuring)
}

// summary measures the run: operations, faults and availability. The
// longest unavailability window is the longest stretch between two probes
// answered within the budget.
func (w *workload) summary() report {
	var r report
	r.ops, r.unknown, r.failed = w.hist.Counts()
	log := w.f.faultLog()
	r.faults = len(log)
	w.mu.Lock()
	probes := append([]probe(nil), w.probes...)
	w.mu.Unlock()
	sort.Slice(probes, func(i, j int) bool { return probes[i].at.Before(probes[j].at) })
	// overlapping names the faults on at some time in [from, to].
	overlapping := func(from, to time.Time) (names []string, crash bool) {
		for _, e := range log {
			if !e.start.After(to) && (e.end.IsZero() || !e.end.Before(from)) {
				names = append(names, e.what)
				crash = crash || e.what == fullCrash
			}
		}
		return names, crash
	}
	var lastOK time.Time
	for _, p := range probes {
		r.probes++
		on, crash := overlapping(p.at, p.at)
		during := len(on) > 0
		if during {
			r.duringFaults++
		}
		if !crash {
			r.probesNoCrash++
		}
		if p.answered {
			r.answered++
			if during {
				r.answeredF++
			}
			if !crash {
				r.answeredNoCrash++
			}
			end := p.at.Add(p.took)
			if !lastOK.IsZero() {
				gap := end.Sub(lastOK)
				names, crash := overlapping(lastOK, end)
				if gap > r.longestGap {
					r.longestGap, r.longestGapDuring = gap, strings.Join(names, ", ")
					r.longestGapFrom, r.longestGapTo = lastOK, end
					if r.longestGapDuring == "" {
						r.longestGapDuring = "no fault"
					}
				}
				if !crash {
					r.longestGapNoCrash = max(r.longestGapNoCrash, gap)
				}
			}
			lastOK = end
		}
	}
	return r
}

// checkHistory checks the history with porcupine; a violation fails the
// test and names the saved history and visualisation.
func (w *workload) checkHistory(t *testing.T) {
	t.Helper()
	require.NoError(t, w.checkHistoryErr(t))
}

// checkHistoryErr is checkHistory returning the checker's verdict.
func (w *workload) checkHistoryErr(t *testing.T) error {
	t.Helper()
	all := w.hist.Operations()
	ops := faults.Settle(all, func(op porcupine.Operation) bool {
		meta, _ := op.Metadata.(faults.Meta)
		id := meta.Change
		if id == "" {
			return false
		}
		admin, _ := w.clients(w.currentNodes()[0])
		resp, err := admin.Admin().GetAdminChange(ctxT(t), &trustfedv1.GetAdminChangeRequest{ChangeId: id})
		require.NoError(t, err, "resolve admin change %s", id)
		return resp.Change.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED
	})
	t.Logf("%d operations, %d after settling unknown outcomes; failures by kind and code: %v", len(all), len(ops), w.errCounts())
	for _, e := range w.errSamples() {
		t.Logf("  first %s", e)
	}
	start := time.Now()
	err := faults.Check(t.Name(), w.seed, w.init, ops, 2*time.Minute, "")
	t.Logf("porcupine checked %d operations in %s", len(ops), time.Since(start).Round(time.Millisecond))
	return err
}

func (w *workload) errCounts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.errs)
}

// errSamples are the first error of each kind and code.
func (w *workload) errSamples() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.sample)
}

// waitProgress waits until n more operations completed after now (the
// cluster serves again), or fails after timeout.
func (w *workload) waitProgress(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	ok0, _, _ := w.hist.Counts()
	testutil.Eventually(t, timeout, fmt.Sprintf("%d more operations complete", n), func() error {
		if ok, _, _ := w.hist.Counts(); ok-ok0 < n {
			return fmt.Errorf("%d completed", ok-ok0)
		}
		return nil
	})
}

// lostWrites counts the level changes acknowledged as applied that some
// node in ids does not hold as applied after the run: acknowledged writes
// lost (a check independent of the history's).
func (w *workload) lostWrites(t *testing.T, ids ...string) int {
	t.Helper()
	w.mu.Lock()
	applied := slices.Clone(w.applied)
	w.mu.Unlock()
	lost := 0
	for _, id := range ids {
		admin, _ := w.clients(id)
		for _, change := range applied {
			var resp *trustfedv1.GetAdminChangeResponse
			var err error
			// A node may be briefly unavailable (an election): ask again.
			for deadline := time.Now().Add(30 * time.Second); ; {
				resp, err = admin.Admin().GetAdminChange(ctxT(t), &trustfedv1.GetAdminChangeRequest{ChangeId: change})
				if c := status.Code(err); (c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.ResourceExhausted) || time.Now().After(deadline) {
					break
				}
				<-time.After(50 * time.Millisecond) // back off before asking again
			}
			if err != nil || resp.Change.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
				t.Errorf("%s: acknowledged change %s lost: %v %v", id, change, err, resp.GetChange().GetStatus())
				lost++
			}
		}
	}
	t.Logf("%d acknowledged level changes, each present on %v", len(applied), ids)
	return lost
}

// probeKind labels the prober's failed attempts in the error tally.
type probeKind struct{}

func (probeKind) String() string { return "probe" }
