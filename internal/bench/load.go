package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/status"
)

// Modes of a run.
const (
	ModeChecks = "checks" // CheckInteraction by member nodes
	ModeWrites = "writes" // UpdateOrganization by an admin (propose, commit, apply)
	ModeMixed  = "mixed"  // checks, and a write every WriteEvery operations
)

// WriteEvery is the share of writes in mixed mode: one operation in ten.
const WriteEvery = 10

// Load is the shape of a run.
type Load struct {
	Mode string
	// Consistency of the checks: linearizable or stale.
	Consistency trustfedv1.Consistency
	// Callers are goroutines each calling in a loop, spread over Conns
	// connections (caller i uses connection i mod Conns).
	Callers, Conns int
	// Pin puts every connection on the first node; otherwise connection k
	// goes to node k mod len(nodes).
	Pin      bool
	Duration time.Duration
	// Orgs and Agreements are preloaded (Preload), and MemberNodes
	// enrolled, by PreloadWorkers concurrent calls (0: the default).
	Orgs, Agreements, MemberNodes, PreloadWorkers int
	// PreloadImport is how many agreements one AdminService.ImportAgreements
	// call carries (already signed by both parties); 0: three calls per
	// agreement (ProposeAgreement and the two SignAgreement), as a cluster
	// without ImportAgreements needs.
	PreloadImport int
}

// Validate checks the shape; errors name the flag.
func (l Load) Validate() error {
	switch {
	case l.Mode != ModeChecks && l.Mode != ModeWrites && l.Mode != ModeMixed:
		return fmt.Errorf("mode: %q: want %s, %s or %s", l.Mode, ModeChecks, ModeWrites, ModeMixed)
	case l.Consistency != trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE && l.Consistency != trustfedv1.Consistency_CONSISTENCY_STALE:
		return fmt.Errorf("consistency: want linearizable or stale")
	case l.Callers < 1:
		return fmt.Errorf("callers: %d: want at least 1", l.Callers)
	case l.Conns < 1 || l.Conns > l.Callers:
		return fmt.Errorf("conns: %d: want 1 to callers (%d)", l.Conns, l.Callers)
	case l.Duration <= 0:
		return fmt.Errorf("duration: %v: want a positive duration", l.Duration)
	case l.Orgs < 2:
		return fmt.Errorf("orgs: %d: want at least 2", l.Orgs)
	case l.Agreements < 1 || l.Agreements > l.Orgs*(l.Orgs-1)/2:
		return fmt.Errorf("agreements: %d: want 1 to %d for %d organisations", l.Agreements, l.Orgs*(l.Orgs-1)/2, l.Orgs)
	case l.MemberNodes < 0:
		return fmt.Errorf("member-nodes: %d: want 0 or more", l.MemberNodes)
	case l.PreloadImport < 0 || l.PreloadImport > state.MaxImportAgreements:
		return fmt.Errorf("preload-import: %d: want 0 (no import) to %d", l.PreloadImport, state.MaxImportAgreements)
	case l.PreloadWorkers < 0:
		return fmt.Errorf("preload-workers: %d: want at least 1 (0: %d)", l.PreloadWorkers, DefaultPreloadWorkers)
	}
	return nil
}

// Result is the one JSON line a run prints.
type Result struct {
	Mode        string `json:"mode"`
	Consistency string `json:"consistency"`
	Nodes       int    `json:"nodes"`
	Pinned      bool   `json:"pinned"`
	Callers     int    `json:"callers"`
	Conns       int    `json:"conns"`
	Orgs        int    `json:"orgs"`
	Agreements  int    `json:"agreements"`
	MemberNodes int    `json:"member_nodes"`
	// PreloadS is how long the preload took.
	PreloadS  float64   `json:"preload_s"`
	DurationS float64   `json:"duration_s"`
	Ops       int       `json:"ops"` // successful operations
	OpsPerS   float64   `json:"ops_per_s"`
	Checks    int       `json:"checks"`
	Writes    int       `json:"writes"`
	LatencyUS Latencies `json:"latency_us"`
	// Errors counts failed operations by gRPC code name.
	Errors map[string]int `json:"errors"`
	// ServerCPUS is the CPU time of every node over the run, from their
	// process_cpu_seconds_total; ServerCPUUSPerOp divides it by Ops. Both
	// absent when a node's /metrics could not be read.
	ServerCPUS       *float64 `json:"server_cpu_s,omitempty"`
	ServerCPUUSPerOp *float64 `json:"server_cpu_us_per_op,omitempty"`
	CPUError         string   `json:"cpu_error,omitempty"`
	// ServerRSSMiB is every node's resident memory after the run (its
	// process_resident_memory_bytes), absent with CPUError.
	ServerRSSMiB []float64 `json:"server_rss_mib,omitempty"`
}

// Latencies are quantiles of the successful operations' latency, µs.
type Latencies struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// conn is one connection of the run and what its callers ask.
type conn struct {
	member *client.Client // calls as a member node of org (checks)
	admin  *client.Client // calls with the admin token (writes)
	org    int
}

// Run preloads t, opens the connections and runs load for its duration.
func Run(ctx context.Context, t Target, load Load, log *slog.Logger) (Result, error) {
	res := Result{Mode: load.Mode, Consistency: consistencyName(load.Consistency), Nodes: len(t.Nodes), Pinned: load.Pin,
		Callers: load.Callers, Conns: load.Conns, Orgs: load.Orgs, Agreements: load.Agreements, MemberNodes: load.MemberNodes, Errors: map[string]int{}}
	if err := load.Validate(); err != nil {
		return res, err
	}
	if len(t.Nodes) == 0 {
		return res, errors.New("no node to call")
	}
	admin, err := dialAdmin(ctx, t, t.Nodes[0])
	if err != nil {
		return res, err
	}
	defer admin.Close()
	t0 := time.Now()
	fx, err := Preload(ctx, admin, t.AdminKeys, load.Orgs, load.Agreements, PreloadOptions{MemberNodes: load.MemberNodes, Workers: load.PreloadWorkers, Import: load.PreloadImport}, log)
	if err != nil {
		return res, err
	}
	res.PreloadS = time.Since(t0).Seconds()
	conns, err := openConns(ctx, t, load, fx, admin)
	defer func() {
		for _, c := range conns {
			_ = c.member.Close()
			_ = c.admin.Close()
		}
	}()
	if err != nil {
		return res, err
	}
	cpu0, cpuErr := ServerCPU(ctx, t)
	start := time.Now()
	stats := drive(ctx, load, fx, conns)
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("run interrupted after %s: %w", elapsed.Round(time.Millisecond), err)
	}
	if cpuErr == nil {
		var cpu1 float64
		if cpu1, cpuErr = ServerCPU(ctx, t); cpuErr == nil && stats.ops() > 0 {
			s, us := cpu1-cpu0, (cpu1-cpu0)*1e6/float64(stats.ops())
			res.ServerCPUS, res.ServerCPUUSPerOp = &s, &us
		}
	}
	if cpuErr == nil {
		res.ServerRSSMiB, cpuErr = ServerRSS(ctx, t)
	}
	if cpuErr != nil {
		res.CPUError = cpuErr.Error()
	}
	res.DurationS = elapsed.Seconds()
	res.Ops, res.Checks, res.Writes = stats.ops(), stats.checks, stats.writes
	res.OpsPerS = float64(res.Ops) / elapsed.Seconds()
	res.LatencyUS = quantiles(stats.lat)
	maps(res.Errors, stats.errs)
	return res, nil
}

func maps(dst, src map[string]int) {
	for k, v := range src {
		dst[k] += v
	}
}

func consistencyName(c trustfedv1.Consistency) string {
	if c == trustfedv1.Consistency_CONSISTENCY_STALE {
		return "stale"
	}
	return "linearizable"
}

// openConns opens load.Conns connections, each as a fresh member node of
// an organisation with partners (round robin) and with the admin token,
// on node k mod len(nodes) (or all on the first node when pinned).
func openConns(ctx context.Context, t Target, load Load, fx *Fixture, admin *client.Client) ([]conn, error) {
	var withPartners []int
	for i, p := range fx.Partners {
		if len(p) > 0 {
			withPartners = append(withPartners, i)
		}
	}
	pinned := t.Nodes[0]
	if load.Pin {
		pinned = leader(ctx, t)
	}
	var out []conn
	for k := range load.Conns {
		node := t.Nodes[k%len(t.Nodes)]
		if load.Pin {
			node = pinned
		}
		org := withPartners[k%len(withPartners)]
		cert, err := fx.Member(ctx, admin, org)
		if err != nil {
			return out, err
		}
		m, err := client.New(ctx, client.Config{Addr: node.GRPCAddr, CACertFile: t.CAFile, Timeout: 30 * time.Second,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }})
		if err != nil {
			return out, fmt.Errorf("member connection to %s: %w", node.GRPCAddr, err)
		}
		a, err := dialAdmin(ctx, t, node)
		if err != nil {
			_ = m.Close()
			return out, err
		}
		out = append(out, conn{member: m, admin: a, org: org})
	}
	return out, nil
}

// leader is the node that says it leads (the first node if none does).
func leader(ctx context.Context, t Target) Node {
	for _, n := range t.Nodes {
		c, err := dialAdmin(ctx, t, n)
		if err != nil {
			continue
		}
		st, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
		_ = c.Close()
		if err == nil && st.State == "Leader" {
			return n
		}
	}
	return t.Nodes[0]
}

// stats are what the callers measured.
type stats struct {
	lat            []time.Duration
	checks, writes int
	errs           map[string]int
}

func (s *stats) ops() int { return s.checks + s.writes }

func (s *stats) add(o *stats) {
	s.lat = append(s.lat, o.lat...)
	s.checks += o.checks
	s.writes += o.writes
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	maps(s.errs, o.errs)
}

// drive runs the callers until the duration has passed (or ctx ends); a
// call in flight at the end completes and counts (the run's time is until
// the last one returns).
func drive(ctx context.Context, load Load, fx *Fixture, conns []conn) *stats {
	end := time.Now().Add(load.Duration)
	var mu sync.Mutex
	total := &stats{errs: map[string]int{}}
	var wg sync.WaitGroup
	for i := range load.Callers {
		c := conns[i%len(conns)]
		wg.Go(func() {
			s := caller(ctx, end, load, fx, c, i)
			mu.Lock()
			total.add(s)
			mu.Unlock()
		})
	}
	wg.Wait()
	return total
}

// caller calls in a loop until end (or ctx ends): checks from its
// connection's organisation to a random partner, and writes (a new name for
// a random organisation) as the mode says.
func caller(ctx context.Context, end time.Time, load Load, fx *Fixture, c conn, id int) *stats {
	s := &stats{errs: map[string]int{}}
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	partners := fx.Partners[c.org]
	for n := 0; ctx.Err() == nil && time.Now().Before(end); n++ {
		write := load.Mode == ModeWrites || (load.Mode == ModeMixed && (n+id)%WriteEvery == 0)
		t0 := time.Now()
		var err error
		if write {
			org := fx.Orgs[rng.IntN(len(fx.Orgs))]
			_, err = c.admin.Admin().UpdateOrganization(ctx, &trustfedv1.UpdateOrganizationRequest{OrganizationId: org, Name: fmt.Sprintf("Bench %s %d-%d", org, id, n)})
		} else {
			var resp *trustfedv1.CheckInteractionResponse
			resp, err = c.member.Registry().CheckInteraction(ctx, &trustfedv1.CheckInteractionRequest{
				FromOrganizationId: fx.Orgs[c.org], ToOrganizationId: fx.Orgs[partners[rng.IntN(len(partners))]],
				Action: Action, Consistency: load.Consistency})
			if err == nil && resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
				err = fmt.Errorf("denied: %v", resp.Reasons)
			}
		}
		d := time.Since(t0)
		switch {
		case err != nil:
			s.errs[codeName(err)]++
		case write:
			s.writes++
			s.lat = append(s.lat, d)
		default:
			s.checks++
			s.lat = append(s.lat, d)
		}
	}
	return s
}

// codeName is the gRPC code of err ("DENIED" for a check that was not
// allowed).
func codeName(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Code().String()
	}
	return "DENIED"
}

// quantiles of lat in µs.
func quantiles(lat []time.Duration) Latencies {
	if len(lat) == 0 {
		return Latencies{}
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := min(len(lat)-1, int(p*float64(len(lat))))
		return float64(lat[i].Nanoseconds()) / 1e3
	}
	return Latencies{P50: q(0.5), P90: q(0.9), P99: q(0.99), P999: q(0.999), Max: float64(lat[len(lat)-1].Nanoseconds()) / 1e3}
}
