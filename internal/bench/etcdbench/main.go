// Command etcdbench runs etcd and trustfed side by side on this machine,
// on the same shapes (nodes, callers, connections, duration), and writes
// the ratio table into BENCHMARKS.md: `make bench-etcd`.
//
// For each shape it starts etcd (Debian's etcd-server; 1 or 3 members on
// loopback, data in a temporary directory, always stopped) and loads it
// through the etcd v3 gRPC API's generated client (linearizable GET,
// serializable GET, PUT of 256 bytes over 1,000 keys), then runs
// `trustfed bench` (which starts its own cluster) on the matching shape:
// audited linearizable check, stale check, committed write. It is a
// separate module so that the etcd API never enters trustfed's go.mod.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// result is the part of `trustfed bench`'s JSON line the table uses; the
// etcd load fills the same fields.
type result struct {
	Ops       int     `json:"ops"`
	OpsPerS   float64 `json:"ops_per_s"`
	DurationS float64 `json:"duration_s"`
	LatencyUS struct {
		P50 float64 `json:"p50"`
		P99 float64 `json:"p99"`
	} `json:"latency_us"`
	Errors           map[string]int `json:"errors"`
	ServerCPUUSPerOp *float64       `json:"server_cpu_us_per_op"`
}

// shape is one row of the table.
type shape struct {
	name    string
	nodes   int
	etcdOp  string
	pin     bool
	tfFlags []string
	// single: one caller over one connection (the latency rows), instead
	// of -callers over -conns.
	single bool
}

var shapes = []shape{
	{"1 node: linearizable GET vs audited check", 1, opLinGet, false, []string{"--mode", "checks", "--consistency", "linearizable"}, false},
	{"1 node: serializable GET vs stale check", 1, opSerGet, false, []string{"--mode", "checks", "--consistency", "stale"}, false},
	{"1 node: PUT vs committed write", 1, opPut, false, []string{"--mode", "writes"}, false},
	{"3 nodes, all calls to the leader: linearizable GET vs audited check", 3, opLinGet, true, []string{"--mode", "checks", "--consistency", "linearizable", "--pin"}, false},
	{"3 nodes, spread: linearizable GET vs audited check", 3, opLinGet, false, []string{"--mode", "checks", "--consistency", "linearizable"}, false},
	{"3 nodes, spread: serializable GET vs stale check", 3, opSerGet, false, []string{"--mode", "checks", "--consistency", "stale"}, false},
	{"3 nodes, spread: PUT vs committed write", 3, opPut, false, []string{"--mode", "writes"}, false},
	{"1 node, 1 caller: linearizable GET vs audited check", 1, opLinGet, false, []string{"--mode", "checks", "--consistency", "linearizable"}, true},
	{"3 nodes, 1 caller (to the leader): linearizable GET vs audited check", 3, opLinGet, true, []string{"--mode", "checks", "--consistency", "linearizable", "--pin"}, true},
}

func main() {
	etcdBin := flag.String("etcd", "etcd", "the etcd server binary")
	trustfed := flag.String("trustfed", "bin/trustfed", "the trustfed binary")
	duration := flag.Duration("duration", 10*time.Second, "length of each measurement")
	callers := flag.Int("callers", 64, "concurrent callers")
	conns := flag.Int("conns", 4, "connections the callers share")
	out := flag.String("benchmarks", "BENCHMARKS.md", "file whose etcd section is (re)written")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *etcdBin, *trustfed, *duration, *callers, *conns, *out); err != nil {
		log.Fatal(err)
	}
}

type row struct {
	shape
	etcd, tf result
}

func run(ctx context.Context, etcdBin, trustfed string, d time.Duration, callers, conns int, out string) error {
	// Shape by shape, etcd then trustfed right after, so that both see the
	// same machine (other jobs come and go on a shared one).
	var rows []row
	fl, err := measureFloor(os.TempDir(), 200, 2000)
	if err != nil {
		return err
	}
	log.Printf("floor: fsync of an append %s (in place %s) + loopback round trip %s", fl.fsync, fl.overwrite, fl.rtt)
	for _, s := range shapes {
		r := row{shape: s}
		callers, conns := callers, conns
		if s.single {
			callers, conns = 1, 1
		}
		log.Printf("etcd: %s", s.name)
		c, err := startEtcd(ctx, etcdBin, s.nodes)
		if err != nil {
			return fmt.Errorf("start etcd (%d nodes): %w", s.nodes, err)
		}
		r.etcd, err = loadEtcd(ctx, c, s.etcdOp, s.pin, callers, conns, d)
		c.stop()
		if err != nil {
			return fmt.Errorf("etcd %s: %w", s.name, err)
		}
		log.Printf("trustfed: %s", s.name)
		if r.tf, err = benchTrustfed(ctx, trustfed, s, d, callers, conns); err != nil {
			return err
		}
		rows = append(rows, r)
	}
	section := report(rows, fl, etcdBin, trustfed, d, callers, conns)
	fmt.Print(section)
	return writeSection(out, section)
}

// benchTrustfed runs `trustfed bench` on shape s.
func benchTrustfed(ctx context.Context, trustfed string, s shape, d time.Duration, callers, conns int) (result, error) {
	var res result
	args := append([]string{"bench", "--nodes", fmt.Sprint(s.nodes), "--callers", fmt.Sprint(callers), "--conns", fmt.Sprint(conns),
		"--duration", d.String()}, s.tfFlags...)
	cmd := exec.CommandContext(ctx, trustfed, args...)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("trustfed %s: %w", strings.Join(args, " "), err)
	}
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return res, fmt.Errorf("trustfed bench output %q: %w", stdout.String(), err)
	}
	return res, nil
}

const (
	beginMarker = "<!-- bench-etcd:begin (written by make bench-etcd) -->\n"
	endMarker   = "<!-- bench-etcd:end -->\n"
)

// writeSection replaces the marked section of path (appends it the first
// time).
func writeSection(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc := string(b)
	i, j := strings.Index(doc, beginMarker), strings.Index(doc, endMarker)
	if i >= 0 && j > i {
		doc = doc[:i] + beginMarker + section + doc[j:]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + beginMarker + section + endMarker
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

func report(rows []row, fl floor, etcdBin, trustfed string, d time.Duration, callers, conns int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s — trustfed vs etcd, side by side (`make bench-etcd`)\n\n", time.Now().UTC().Format("2006-01-02"))
	fmt.Fprintf(&b, "Machine: %s, %d CPUs, %s RAM, shared: servers and load generators use the same\n", cpuModel(), runtime.NumCPU(), memTotal())
	b.WriteString("cores, and other people's jobs ran at the same time, so absolute numbers are noisy and\n")
	b.WriteString("understated; compare ratios within this run (each row: etcd, then trustfed right after).\n\n")
	fmt.Fprintf(&b, "- etcd: `%s` (Debian's etcd-server), default settings; 256-byte values over 1,000 keys,\n", version(etcdBin, "--version"))
	b.WriteString("  loaded through the etcd v3 gRPC API's generated client (`internal/bench/etcdbench`).\n")
	fmt.Fprintf(&b, "- trustfed: `%s`; `trustfed bench` starts its own loopback cluster per\n", version(trustfed, "version"))
	b.WriteString("  row (a dev node, or 3 bootstrapped nodes with endorsed keys), rate limits off.\n")
	fmt.Fprintf(&b, "- Commands: `make bench-etcd` (`BENCH_DURATION=%s BENCH_CALLERS=%d BENCH_CONNS=%d`), i.e.\n", d, callers, conns)
	fmt.Fprintf(&b, "  `go run ./internal/bench/etcdbench -duration %s -callers %d -conns %d`; each trustfed row is\n", d, callers, conns)
	fmt.Fprintf(&b, "  `trustfed bench --nodes N --callers %d --conns %d --duration %s --mode … [--consistency …] [--pin]`.\n\n", callers, conns, d)
	b.WriteString("| shape | etcd ops/s | trustfed ops/s | ratio | etcd p50 / p99 ms | trustfed p50 / p99 ms | server CPU µs/op etcd / trustfed | errors etcd / trustfed |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		ratio := 0.0
		if r.etcd.OpsPerS > 0 {
			ratio = r.tf.OpsPerS / r.etcd.OpsPerS
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f× | %.1f / %.1f | %.1f / %.1f | %s / %s | %s / %s |\n", r.name,
			r.etcd.OpsPerS, r.tf.OpsPerS, ratio,
			r.etcd.LatencyUS.P50/1e3, r.etcd.LatencyUS.P99/1e3, r.tf.LatencyUS.P50/1e3, r.tf.LatencyUS.P99/1e3,
			cpu(r.etcd.ServerCPUUSPerOp), cpu(r.tf.ServerCPUUSPerOp), errs(r.etcd.Errors), errs(r.tf.Errors))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Floor of a single caller's audited check on this machine (issue 19's latency target is p50 ≤ 2× it): the median 4 KiB append + fsync in `%s` (%.2f ms; %.2f ms for a block rewritten in place, which a growing log does not get) plus the median 64-byte loopback TCP round trip (%.3f ms) = **%.2f ms**; the \"1 caller\" rows use one caller over one connection.", os.TempDir(), ms(fl.fsync), ms(fl.overwrite), ms(fl.rtt), ms(fl.sum()))
	for _, r := range rows {
		if r.single && r.tf.LatencyUS.P50 > 0 {
			fmt.Fprintf(&b, " %s: trustfed p50 %.2f ms = **%.1f× the floor** (etcd %.1f×).", strings.SplitN(r.name, ":", 2)[0], r.tf.LatencyUS.P50/1e3, r.tf.LatencyUS.P50/1e3/ms(fl.sum()), r.etcd.LatencyUS.P50/1e3/ms(fl.sum()))
		}
	}
	b.WriteString("\n\n")
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func cpu(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.0f", *v)
}

func errs(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	return strings.Join(parts, ", ")
}

func version(bin, arg string) string {
	out, err := exec.Command(bin, arg).Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return runtime.GOARCH
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int
			fmt.Sscanf(strings.TrimSpace(v), "%d", &kb)
			return fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
		}
	}
	return "unknown"
}
