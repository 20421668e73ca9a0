package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/server"
)

// registerServerFlags binds the flags of `trustfed server` to cfg, whose
// values are the defaults. They are parsed with the standard flag package,
// so both -data-dir and --data-dir work.
func registerServerFlags(fs *flag.FlagSet, c *server.Config) {
	fs.BoolVar(&c.Dev, "dev", c.Dev, "development mode: one node, loopback only, temporary data dir unless -data-dir, self-signed TLS, printed admin token")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the Raft log, snapshots, TLS material and admin.token (required unless -dev)")
	fs.StringVar(&c.NodeID, "node-id", c.NodeID, "this server's node id (default: \"dev\" in dev mode; required otherwise)")
	fs.StringVar(&c.RaftAddr, "raft-addr", c.RaftAddr, "Raft listen address (server-to-server, mutual TLS)")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC listen address (members, CLI, peers)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "REST/JSON listen address (HTTPS)")
	fs.StringVar(&c.AdvertiseAPI, "advertise-api", c.AdvertiseAPI, "gRPC address other servers use to reach this one (default: -grpc-addr as bound)")
	fs.StringVar(&c.AdvertiseRaft, "advertise-raft", c.AdvertiseRaft, "Raft address other servers use to reach this one (default: -raft-addr as bound; required when it is 0.0.0.0)")
	fs.BoolVar(&c.Bootstrap, "bootstrap", c.Bootstrap, "bootstrap a new single-voter cluster if the data dir holds no Raft state, and create the first admin token")
	fs.StringVar(&c.BootstrapNode, "bootstrap-node", c.BootstrapNode, "the node id that bootstraps the cluster: that node acts as with -bootstrap (and ignores -join), every other one joins with -join (one configuration for every server, e.g. a Kubernetes StatefulSet)")
	fs.StringVar(&c.Join, "join", c.Join, "gRPC address of a cluster member to join through (as a non-voter, promoted to voter once caught up)")
	fs.StringVar(&c.TLSCA, "tls-ca", c.TLSCA, "cluster CA certificate (PEM); default in dev mode: generated under <data-dir>/tls")
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "this node's certificate (PEM), issued by the cluster CA (see: trustfed ca issue-node)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "this node's private key (PEM)")
	fs.StringVar(&c.TLSCAKey, "tls-ca-key", c.TLSCAKey, "the cluster CA's private key (PEM), to issue member node certificates; without it this server refuses IssueMemberCertificate (default in dev mode: generated under <data-dir>/tls)")
	fs.DurationVar(&c.MemberCertTTL, "member-cert-ttl", c.MemberCertTTL, "longest lifetime of a member node certificate (1m..168h)")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", c.AdminTokenFile, "where -bootstrap writes the first admin token (default <data-dir>/admin.token)")
	fs.DurationVar(&c.BootstrapTokenTTL, "bootstrap-token-ttl", c.BootstrapTokenTTL, "lifetime of the first admin token, the one -bootstrap (and -dev) creates (1m..8784h): create named admin tokens before it expires")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.BoolVar(&c.RaftFastTimeouts, "raft-fast-timeouts", c.RaftFastTimeouts, "short Raft timeouts (tests and loopback clusters only)")
	fs.DurationVar(&c.RaftCommitTimeout, "raft-commit-timeout", c.RaftCommitTimeout, "longest a quiet leader waits before telling followers the commit index (1ms..1s): a check waits for a quorum of replicas to apply its audit batch, so this bounds the extra latency of a quiet cluster; each follower gets up to 1/timeout empty AppendEntries a second")
	fs.Uint64Var(&c.SnapshotThreshold, "raft-snapshot-threshold", c.SnapshotThreshold, "Raft log entries after which a node snapshots its state (0 = Raft's default, 8192)")
	fs.Uint64Var(&c.TrailingLogs, "raft-trailing-logs", c.TrailingLogs, "Raft log entries a snapshot keeps for lagging followers; one further behind gets the snapshot (0 = Raft's default, 10240)")
	registerLimitFlags(fs, c)
	fs.DurationVar(&c.CascadeDeadline, "cascade-deadline", c.CascadeDeadline, "time partners have to acknowledge a revocation cascade (AG-783: 300s)")
	fs.Float64Var(&c.CascadeEscalateAt, "cascade-escalate-at", c.CascadeEscalateAt, "fraction of -cascade-deadline at which partners still unacknowledged are escalated, (0,1]")
	fs.IntVar(&c.CascadeWorkers, "cascade-workers", c.CascadeWorkers, "notifications in flight per cascade (raise for very large federations on slow networks)")
	fs.StringVar(&c.WebhookCA, "webhook-ca", c.WebhookCA, "PEM file of extra CAs trusted for members' webhook endpoints (default: system roots)")
	fs.StringVar(&c.AuditOrigin, "audit-origin", c.AuditOrigin, "name of the audit log in its signed checkpoints (C2SP origin): make it unique to your federation, e.g. registry.example.org/audit; fixed by the first checkpoint")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "serve Go runtime profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6060 (off by default; no authentication, so loopback only)")
	fs.BoolVar(&c.UnauditedDecisions, "unaudited-decisions", c.UnauditedDecisions, "answer checks without committing their audit entries (-dev only: to measure what auditing costs)")
}

// registerLimitFlags binds the server's rate-limit and stream-cap flags.
func registerLimitFlags(fs *flag.FlagSet, c *server.Config) {
	l := &c.Limits
	fs.Float64Var(&l.Checks.PerSecond, "rate-checks", l.Checks.PerSecond, "CheckInteraction calls per second per caller on each node (0 = unlimited)")
	fs.IntVar(&l.Checks.Burst, "rate-checks-burst", l.Checks.Burst, "CheckInteraction calls a caller may make at once after being idle (bucket size)")
	fs.Float64Var(&l.Writes.PerSecond, "rate-writes", l.Writes.PerSecond, "state-changing calls per second per caller on each node (0 = unlimited)")
	fs.IntVar(&l.Writes.Burst, "rate-writes-burst", l.Writes.Burst, "state-changing calls a caller may make at once after being idle (bucket size)")
	fs.Float64Var(&l.Reads.PerSecond, "rate-reads", l.Reads.PerSecond, "other calls (reads, stream opens) per second per caller on each node (0 = unlimited)")
	fs.IntVar(&l.Reads.Burst, "rate-reads-burst", l.Reads.Burst, "other calls a caller may make at once after being idle (bucket size)")
	fs.IntVar(&l.WatchStreamsPerOrg, "watch-streams-per-org", l.WatchStreamsPerOrg, "WatchEvents streams one organisation may hold open at once on each node (0 = unlimited)")
}

func newServerCmd(getenv func(string) string) *cobra.Command {
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

  trustfed server -config /etc/trustfed/trustfed.yaml [-validate]

Flags take one or two dashes (-dev or --dev). Every flag is also a key of
the -config YAML file (data-dir: /var/lib/trustfed) and an environment
variable (TRUSTFED_DATA_DIR); flags win over the environment, which wins
over the file. -validate reports every bad setting at once and exits.`,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, validate, err := parseServerConfig(args, getenv, cmd.ErrOrStderr(), cmd.OutOrStdout())
			if errors.Is(err, flag.ErrHelp) {
				return nil
			}
			if err != nil {
				return err
			}
			if validate {
				_, err := fmt.Fprintln(cmd.OutOrStdout(), "configuration OK")
				return err
			}
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(cmd.Context())
		},
	}
}

// parseServerFlags turns the arguments of `trustfed server` into a checked
// server.Config; a mistake is a usage error. In dev mode the banner goes
// to out once the server is ready.
func parseServerFlags(args []string, stderr, out io.Writer) (server.Config, error) {
	cfg, _, err := parseServerConfig(args, func(string) string { return "" }, stderr, out)
	return cfg, err
}

// parseServerConfig is parseServerFlags with the configuration file
// (-config) and the TRUSTFED_* environment variables under the flags:
// flags > environment > file > defaults. Every bad setting, wherever it
// came from, is reported at once. validate: -validate was given (check,
// then exit without starting).
func parseServerConfig(args []string, getenv func(string) string, stderr, out io.Writer) (cfg server.Config, validate bool, err error) {
	fs := flag.NewFlagSet("trustfed server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg = server.DefaultConfig()
	registerServerFlags(fs, &cfg)
	configFile := fs.String("config", "", "YAML configuration file: flag names as keys (data-dir: /var/lib/trustfed); flags and TRUSTFED_* environment variables override it (env "+envName("config")+")")
	fs.BoolVar(&validate, "validate", false, "check the configuration (file, environment, flags), report every bad setting and exit without starting")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, false, err
		}
		return cfg, false, usageError{err}
	}
	if fs.NArg() > 0 {
		return cfg, false, usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	settings := &serverSettings{fs: fs, explicit: map[string]bool{}}
	fs.Visit(func(f *flag.Flag) { settings.explicit[f.Name] = true })
	if *configFile == "" {
		*configFile = getenv(envName("config"))
	}
	if *configFile != "" {
		settings.applyFile(*configFile)
	}
	settings.applyEnv(getenv)
	if err := errors.Join(settings.err(), cfg.Validate()); err != nil {
		return cfg, validate, usageError{err}
	}
	b := server.ReadBuildInfo(version, commit)
	cfg.Version, cfg.Revision = b.Version, b.Revision
	if cfg.Dev {
		cfg.DevReady = func(d server.DevInfo) { printDevBanner(out, d) }
	}
	return cfg, validate, nil
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }
