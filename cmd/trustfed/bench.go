package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/bench"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// benchOptions are the flags of `trustfed bench`.
type benchOptions struct {
	nodes         int
	targets       []string
	httpAddrs     []string
	approvers     []string
	mode          string
	consistency   string
	callers       int
	conns         int
	pin           bool
	duration      time.Duration
	orgs          int
	agreements    int
	memberNodes   int
	workers       int
	preloadImport int
	keep          bool
	serverArgs    []string
	verbose       bool
}

const benchLong = `Measure a trustfed cluster under load and print one JSON line: operations
per second, latency quantiles (µs), errors by gRPC code, and the servers' CPU
per operation (the growth of every node's process_cpu_seconds_total from its
GET /metrics, divided by the operations).

Without --target, bench starts its own cluster on loopback: --nodes 1 (a dev
server) or 3 (a bootstrapped cluster with its own CA, two admins and endorsed
node keys), processes of this same binary with rate limits off, data in a
temporary directory, all stopped and removed when the run ends.

With --target ADDR (repeatable: gRPC addresses of the nodes) it calls a
running cluster: --cacert, an admin --token (or --token-file) and admin keys
enough for the admin quorum (--admin-key, plus --approver-key for each other
admin) are needed; --http-addr (one per target, same order) gives the nodes'
HTTPS addresses for /metrics (without them the CPU figure is left out). The
cluster's rate limits apply: lift them (-rate-checks 0 ...) for a benchmark.

Set-up: an issuer is accredited through the admin quorum, --orgs
organisations are registered and approved at level 4, --agreements bilateral
agreements covering task_send are signed (organisation i with i+1, i+2, ...),
--member-nodes member nodes are enrolled (round robin over the organisations,
no certificates), --preload-workers calls at a time (the agreements
--preload-import to an AdminService.ImportAgreements call, signed by both
parties; --preload-import 0: proposed and signed one call each), and each of --conns
connections is a fresh member node of an organisation with an agreement, opened to node k mod nodes (or all to the first node with
--pin). Then --callers goroutines (caller i on connection i mod conns) call
for --duration:

  checks   CheckInteraction from the connection's organisation to a random
           partner (--consistency linearizable or stale); each must be ALLOW
  writes   UpdateOrganization with the admin token (propose, commit, apply)
  mixed    checks, and one write in every 10 operations

Scale (make bench-scale): --orgs 10000 --agreements 1000000 --member-nodes
100000 --preload-workers 64; with --keep the loopback cluster stays up after
the result (its directory and addresses on stderr) until Ctrl-C, for
snapshots, restarts and joins against the loaded state.

docs/benchmarks.md explains the output and how to compare with etcd
(make bench-etcd).`

func newBenchCmd(a *app) *cobra.Command {
	o := benchOptions{nodes: 1, mode: bench.ModeChecks, consistency: "linearizable", callers: 64, conns: 4, duration: 10 * time.Second, orgs: 2, agreements: 1}
	cmd := &cobra.Command{
		Use:   "bench [--nodes 1|3 | --target ADDR...] [--mode checks|writes|mixed] [flags]",
		Short: "Load a cluster (its own on loopback, or a running one) and print one JSON line of results",
		Long:  benchLong,
		Example: `  trustfed bench --nodes 3 --callers 64 --conns 4 --duration 10s
  trustfed bench --nodes 1 --mode checks --consistency stale
  trustfed bench --target n1:7443 --target n2:7443 --http-addr n1:7080 --http-addr n2:7080 \
      --cacert ca.pem --token-file admin.token --admin-key alice.key --approver-key bob.key`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runBench(cmd, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.nodes, "nodes", o.nodes, "nodes of the loopback cluster bench starts: 1 or 3 (without --target)")
	f.StringArrayVar(&o.targets, "target", nil, "gRPC address of a node of a running cluster to load (repeatable)")
	f.StringArrayVar(&o.httpAddrs, "http-addr", nil, "HTTPS address of each --target, same order, for /metrics (repeatable)")
	f.StringArrayVar(&o.approvers, "approver-key", nil, "another admin's approval key for the preload's admin changes (repeatable)")
	f.StringVar(&o.mode, "mode", o.mode, "checks, writes or mixed")
	f.StringVar(&o.consistency, "consistency", o.consistency, "consistency of the checks: linearizable or stale")
	f.IntVar(&o.callers, "callers", o.callers, "concurrent callers")
	f.IntVar(&o.conns, "conns", o.conns, "gRPC connections the callers share (each a member node)")
	f.BoolVar(&o.pin, "pin", false, "open every connection to the leader (the node whose status says so) instead of spreading them over the nodes")
	f.DurationVar(&o.duration, "duration", o.duration, "how long the callers call")
	f.IntVar(&o.orgs, "orgs", o.orgs, "organisations to preload")
	f.IntVar(&o.agreements, "agreements", o.agreements, "agreements to preload (at most orgs*(orgs-1)/2)")
	f.IntVar(&o.memberNodes, "member-nodes", 0, "member nodes to enrol in the preload, round robin over the organisations (beyond one per connection)")
	f.IntVar(&o.workers, "preload-workers", bench.DefaultPreloadWorkers, "concurrent calls of the preload")
	f.IntVar(&o.preloadImport, "preload-import", bench.DefaultPreloadImport, "agreements per ImportAgreements call of the preload, signed by both parties (0: ProposeAgreement and two SignAgreement calls per agreement, for a cluster without ImportAgreements)")
	f.BoolVar(&o.keep, "keep", false, "keep the loopback cluster running after the result until interrupted (without --target)")
	f.StringArrayVar(&o.serverArgs, "server-arg", nil, "extra flag for the servers bench starts (repeatable), e.g. --server-arg=-raft-commit-timeout=1ms")
	f.BoolVar(&o.verbose, "verbose", false, "log the set-up steps to stderr")
	return cmd
}

// load turns the flags into the shape of the run.
func (o benchOptions) load() (bench.Load, error) {
	l := bench.Load{Mode: o.mode, Callers: o.callers, Conns: o.conns, Pin: o.pin, Duration: o.duration, Orgs: o.orgs, Agreements: o.agreements,
		MemberNodes: o.memberNodes, PreloadWorkers: o.workers, PreloadImport: o.preloadImport}
	switch strings.ToLower(o.consistency) {
	case "linearizable":
		l.Consistency = trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE
	case "stale":
		l.Consistency = trustfedv1.Consistency_CONSISTENCY_STALE
	default:
		return l, usageErrorf("--consistency: %q: want linearizable or stale", o.consistency)
	}
	if err := l.Validate(); err != nil {
		return l, usageErrorf("--%w", err)
	}
	if len(o.targets) == 0 && o.nodes != 1 && o.nodes != 3 {
		return l, usageErrorf("--nodes: %d: want 1 or 3", o.nodes)
	}
	if o.workers < 1 {
		return l, usageErrorf("--preload-workers: %d: want at least 1", o.workers)
	}
	if o.keep && len(o.targets) > 0 {
		return l, usageErrorf("--keep: only for the cluster bench starts, not with --target")
	}
	if len(o.httpAddrs) > 0 && len(o.httpAddrs) != len(o.targets) {
		return l, usageErrorf("--http-addr: %d given for %d --target: one per target", len(o.httpAddrs), len(o.targets))
	}
	return l, nil
}

func (a *app) runBench(cmd *cobra.Command, o benchOptions) error {
	load, err := o.load()
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))
	ctx := cmd.Context()
	var target bench.Target
	var local *bench.Local
	if len(o.targets) == 0 {
		bin, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find this binary to start servers: %w", err)
		}
		if strings.HasSuffix(filepath.Base(bin), ".test") {
			// A Go test binary started as "server" would run its tests
			// again, each starting servers: never.
			return fmt.Errorf("bench starts its servers from the trustfed binary, and %s is a Go test binary: pass --target", filepath.Base(bin))
		}
		l, err := bench.StartLocal(ctx, bin, o.nodes, o.serverArgs, log)
		if err != nil {
			return fmt.Errorf("start a %d-node cluster: %w", o.nodes, err)
		}
		defer func() {
			if err := l.Close(); err != nil {
				log.Warn("stop the cluster", "error", err)
			}
		}()
		target, local = l.Target, l
	} else {
		if target, err = a.benchTarget(cmd, o); err != nil {
			return err
		}
	}
	res, err := bench.Run(ctx, target, load, log)
	if err != nil {
		return err
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(a.stdout, string(b)); err != nil {
		return err
	}
	if o.keep && local != nil {
		log.Warn("the cluster stays up until interrupted (Ctrl-C)", "dir", local.Dir(), "pids", local.PIDs(), "nodes", local.Nodes)
		<-ctx.Done()
	}
	return nil
}

// benchTarget is the running cluster the flags name.
func (a *app) benchTarget(cmd *cobra.Command, o benchOptions) (bench.Target, error) {
	var t bench.Target
	token, err := a.resolveToken(cmd)
	if err != nil {
		return t, err
	}
	if token == "" {
		return t, usageErrorf("--target needs an admin --token or --token-file")
	}
	key, err := a.loadAdminKey()
	if err != nil {
		return t, err
	}
	t = bench.Target{CAFile: a.cacert, Token: token, AdminKeys: []ed25519.PrivateKey{key}}
	for _, path := range o.approvers {
		k, err := attestation.LoadPrivateKey(path)
		if err != nil {
			return t, fmt.Errorf("--approver-key %s: %w", path, err)
		}
		t.AdminKeys = append(t.AdminKeys, k)
	}
	for i, addr := range o.targets {
		n := bench.Node{GRPCAddr: addr}
		if len(o.httpAddrs) > 0 {
			n.HTTPAddr = o.httpAddrs[i]
		}
		t.Nodes = append(t.Nodes, n)
	}
	return t, nil
}
