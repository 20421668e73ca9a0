package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/registry/state"
)

// serverFlags are the flags of `trustfed server`. They are parsed with the
// standard flag package, so both -data-dir and --data-dir work.
type serverFlags struct {
	dev       bool
	dataDir   string
	nodeID    string
	raftAddr  string
	grpcAddr  string
	httpAddr  string
	advertise string
	advRaft   string
	bootstrap bool
	join      string
	tlsCA     string
	tlsCert   string
	tlsKey    string
	tlsCAKey  string
	tokenFile string
	tokenTTL  time.Duration
	logLevel  string
	logFormat string
	raftFast  bool
	limits    limitFlags

	cascadeDeadline   time.Duration
	cascadeEscalateAt float64
	cascadeWorkers    int
	webhookCA         string

	auditOrigin        string
	unauditedDecisions bool
	debugAddr          string

	memberCertTTL time.Duration
}

func (f *serverFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&f.dev, "dev", false, "development mode: one node, loopback only, temporary data dir unless -data-dir, self-signed TLS, printed admin token")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the Raft log, snapshots, TLS material and admin.token (required unless -dev)")
	fs.StringVar(&f.nodeID, "node-id", "", "this server's node id (default: \"dev\" in dev mode; required otherwise)")
	fs.StringVar(&f.raftAddr, "raft-addr", "127.0.0.1:7000", "Raft listen address (server-to-server, mutual TLS)")
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7443", "gRPC listen address (members, CLI, peers)")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8443", "REST/JSON listen address (HTTPS)")
	fs.StringVar(&f.advertise, "advertise-api", "", "gRPC address other servers use to reach this one (default: -grpc-addr as bound)")
	fs.StringVar(&f.advRaft, "advertise-raft", "", "Raft address other servers use to reach this one (default: -raft-addr as bound; required when it is 0.0.0.0)")
	fs.BoolVar(&f.bootstrap, "bootstrap", false, "bootstrap a new single-voter cluster if the data dir holds no Raft state, and create the first admin token")
	fs.StringVar(&f.join, "join", "", "gRPC address of a cluster member to join through (as a non-voter, promoted to voter once caught up)")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "cluster CA certificate (PEM); default in dev mode: generated under <data-dir>/tls")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "this node's certificate (PEM), issued by the cluster CA (see: trustfed ca issue-node)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "this node's private key (PEM)")
	fs.StringVar(&f.tlsCAKey, "tls-ca-key", "", "the cluster CA's private key (PEM), to issue member node certificates; without it this server refuses IssueMemberCertificate (default in dev mode: generated under <data-dir>/tls)")
	fs.DurationVar(&f.memberCertTTL, "member-cert-ttl", 24*time.Hour, "longest lifetime of a member node certificate (1m..168h)")
	fs.StringVar(&f.tokenFile, "admin-token-file", "", "where -bootstrap writes the first admin token (default <data-dir>/admin.token)")
	fs.DurationVar(&f.tokenTTL, "bootstrap-token-ttl", 24*time.Hour, "lifetime of the first admin token, the one -bootstrap (and -dev) creates (1m..8784h): create named admin tokens before it expires")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&f.raftFast, "raft-fast-timeouts", false, "short Raft timeouts (tests and loopback clusters only)")
	f.limits.register(fs)
	fs.DurationVar(&f.cascadeDeadline, "cascade-deadline", 300*time.Second, "time partners have to acknowledge a revocation cascade (AG-783: 300s)")
	fs.Float64Var(&f.cascadeEscalateAt, "cascade-escalate-at", 0.8, "fraction of -cascade-deadline at which partners still unacknowledged are escalated, (0,1]")
	fs.IntVar(&f.cascadeWorkers, "cascade-workers", 256, "notifications in flight per cascade (raise for very large federations on slow networks)")
	fs.StringVar(&f.webhookCA, "webhook-ca", "", "PEM file of extra CAs trusted for members' webhook endpoints (default: system roots)")
	fs.StringVar(&f.auditOrigin, "audit-origin", "trustfed.local/audit", "name of the audit log in its signed checkpoints (C2SP origin): make it unique to your federation, e.g. registry.example.org/audit; fixed by the first checkpoint")
	fs.StringVar(&f.debugAddr, "debug-addr", "", "serve Go runtime profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (off by default; no authentication, so loopback only)")
	fs.BoolVar(&f.unauditedDecisions, "unaudited-decisions", false, "answer checks without committing their audit entries (-dev only: to measure what auditing costs)")
}

func newServerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "server [flags]",
		Short: "Run a trustfed registry server (-dev for a local single node)",
		Long: `Run a trustfed registry server.

  trustfed server -dev
      One node on loopback with a temporary data dir, self-signed TLS and a
      printed admin token. Nothing listens beyond 127.0.0.1.

  trustfed server -node-id n1 -data-dir /var/lib/trustfed -bootstrap \
      -tls-ca ca.pem -tls-cert n1.pem -tls-key n1-key.pem \
      -raft-addr 10.0.0.1:7000 -grpc-addr 10.0.0.1:7443 -http-addr 10.0.0.1:8443
  trustfed server -node-id n2 ... -join 10.0.0.1:7443

Flags take one or two dashes (-dev or --dev).`,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs := flag.NewFlagSet("trustfed server", flag.ContinueOnError)
			fs.SetOutput(cmd.ErrOrStderr())
			var f serverFlags
			f.register(fs)
			if err := fs.Parse(args); err != nil {
				if errors.Is(err, flag.ErrHelp) {
					return nil
				}
				return usageError{err}
			}
			if fs.NArg() > 0 {
				return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runServer(ctx, f, cmd.OutOrStdout())
		},
	}
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// resolve fills defaults and checks the flags; it refuses what dev mode must not do.
func (f *serverFlags) resolve() error {
	if f.dev {
		if f.nodeID == "" {
			f.nodeID = "dev"
		}
		if f.join != "" {
			return usageError{errors.New("-dev runs a single node: -join is not allowed")}
		}
		for _, a := range []struct{ name, addr string }{{"-raft-addr", f.raftAddr}, {"-grpc-addr", f.grpcAddr}, {"-http-addr", f.httpAddr}} {
			if !isLoopback(a.addr) {
				return usageError{fmt.Errorf("-dev binds to loopback only: %s %q is not a loopback address", a.name, a.addr)}
			}
		}
		if f.dataDir == "" {
			dir, err := os.MkdirTemp("", "trustfed-dev-")
			if err != nil {
				return fmt.Errorf("create dev data dir: %w", err)
			}
			f.dataDir = dir
		}
		f.bootstrap = true
		f.raftFast = true
	}
	if err := f.checkAddrs(); err != nil {
		return err
	}
	if f.dataDir == "" {
		return usageError{errors.New("-data-dir is required (or use -dev)")}
	}
	if f.nodeID == "" {
		return usageError{errors.New("-node-id is required (or use -dev)")}
	}
	if f.bootstrap && f.join != "" {
		return usageError{errors.New("-bootstrap and -join exclude each other: bootstrap one node, join the others to it")}
	}
	if !f.dev && (f.tlsCA == "" || f.tlsCert == "" || f.tlsKey == "") {
		return usageError{errors.New("-tls-ca, -tls-cert and -tls-key are required outside -dev (create them with: trustfed ca init, trustfed ca issue-node)")}
	}
	if f.memberCertTTL < time.Minute || f.memberCertTTL > 7*24*time.Hour {
		return usageError{fmt.Errorf("-member-cert-ttl %s is out of range 1m..168h", f.memberCertTTL)}
	}
	if f.tlsCAKey != "" && f.tlsCA == "" {
		return usageError{errors.New("-tls-ca-key needs -tls-ca (the certificate of that key)")}
	}
	if f.tokenFile == "" {
		f.tokenFile = filepath.Join(f.dataDir, "admin.token")
	}
	if f.tokenTTL < state.MinTokenTTL || f.tokenTTL > state.MaxTokenTTL {
		return usageError{fmt.Errorf("-bootstrap-token-ttl %s is out of range %s..%s", f.tokenTTL, state.MinTokenTTL, state.MaxTokenTTL)}
	}
	if f.unauditedDecisions && !f.dev {
		return usageError{errors.New("-unaudited-decisions is only for measurements in -dev mode: every decision is audited otherwise")}
	}
	if f.debugAddr != "" && !isLoopback(f.debugAddr) {
		return usageError{fmt.Errorf("-debug-addr %q is not a loopback address: the profiles have no authentication", f.debugAddr)}
	}
	if f.auditOrigin == "" || strings.ContainsAny(f.auditOrigin, " +\n") {
		return usageError{fmt.Errorf("-audit-origin %q must be a non-empty name without spaces or '+'", f.auditOrigin)}
	}
	return nil
}

// checkAddrs refuses a malformed address flag at start: listen addresses
// need a port in 0..65535 (the host may be empty), addresses other servers
// dial a host and a port in 1..65535; none takes a scheme or a path.
func (f *serverFlags) checkAddrs() error {
	listen, dial := consensus.CheckListenAddress, consensus.CheckAddress
	for _, a := range []struct {
		name, addr string
		optional   bool
		check      func(string) error
	}{
		{"-raft-addr", f.raftAddr, false, listen}, {"-grpc-addr", f.grpcAddr, false, listen}, {"-http-addr", f.httpAddr, false, listen},
		{"-debug-addr", f.debugAddr, true, listen}, {"-advertise-api", f.advertise, true, dial}, {"-advertise-raft", f.advRaft, true, dial},
		{"-join", f.join, true, dial},
	} {
		if a.optional && a.addr == "" {
			continue
		}
		if err := a.check(a.addr); err != nil {
			return usageError{fmt.Errorf("%s %w", a.name, err)}
		}
	}
	if host, _, _ := net.SplitHostPort(f.grpcAddr); f.advertise == "" && (host == "" || net.ParseIP(host).IsUnspecified()) {
		return usageError{fmt.Errorf("-grpc-addr %q listens on every interface: set -advertise-api to the address other servers dial", f.grpcAddr)}
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
