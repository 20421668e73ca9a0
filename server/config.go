package server

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/state"
)

// Config holds every setting of a server. The comment of each field names
// the `trustfed server` flag that sets it; errors from [Config.Validate]
// name a setting by that flag, the name an operator knows.
type Config struct {
	Dev           bool   // -dev: one node, loopback only, self-signed TLS, bootstraps itself
	DataDir       string // -data-dir (in dev mode, empty means a new temporary directory)
	NodeID        string // -node-id (default "dev" in dev mode)
	RaftAddr      string // -raft-addr
	GRPCAddr      string // -grpc-addr
	HTTPAddr      string // -http-addr
	AdvertiseAPI  string // -advertise-api (default: GRPCAddr as bound)
	AdvertiseRaft string // -advertise-raft (default: RaftAddr as bound)
	Bootstrap     bool   // -bootstrap
	Join          string // -join
	// -bootstrap-node: the node id that bootstraps; every other node joins
	// (-join). One set of settings for every server (a StatefulSet).
	BootstrapNode      string
	TLSCA              string        // -tls-ca
	TLSCert            string        // -tls-cert
	TLSKey             string        // -tls-key
	TLSCAKey           string        // -tls-ca-key
	MemberCertTTL      time.Duration // -member-cert-ttl
	AdminTokenFile     string        // -admin-token-file (default <DataDir>/admin.token)
	BootstrapTokenTTL  time.Duration // -bootstrap-token-ttl
	LogLevel           string        // -log-level: debug, info, warn or error
	LogFormat          string        // -log-format: text or json
	LogOutput          io.Writer     // where logs go (default os.Stderr); no flag
	RaftFastTimeouts   bool          // -raft-fast-timeouts (always on in dev mode)
	RaftCommitTimeout  time.Duration // -raft-commit-timeout
	SnapshotThreshold  uint64        // -raft-snapshot-threshold (0 = Raft's default)
	TrailingLogs       uint64        // -raft-trailing-logs (0 = Raft's default)
	Limits             registry.Limits
	CascadeDeadline    time.Duration // -cascade-deadline
	CascadeEscalateAt  float64       // -cascade-escalate-at
	CascadeWorkers     int           // -cascade-workers
	WebhookCA          string        // -webhook-ca
	AuditOrigin        string        // -audit-origin
	UnauditedDecisions bool          // -unaudited-decisions (dev only)
	DebugAddr          string        // -debug-addr
	Version            string        // reported by status and /metrics; no flag
	Revision           string        // VCS commit on /metrics ("" = what Go recorded); no flag

	// DevReady, when set in dev mode, is called once the dev server holds
	// its signing key, bootstrap token and admin (the CLI prints its banner).
	DevReady func(DevInfo)
}

// DefaultConfig returns the defaults of the `trustfed server` flags.
func DefaultConfig() Config {
	return Config{
		RaftAddr:          "127.0.0.1:7000",
		GRPCAddr:          "127.0.0.1:7443",
		HTTPAddr:          "127.0.0.1:8443",
		MemberCertTTL:     24 * time.Hour,
		RaftCommitTimeout: 5 * time.Millisecond,
		BootstrapTokenTTL: 24 * time.Hour,
		LogLevel:          "info",
		LogFormat:         "text",
		Limits:            registry.DefaultLimits(),
		CascadeDeadline:   300 * time.Second,
		CascadeEscalateAt: 0.8,
		CascadeWorkers:    256,
		AuditOrigin:       "trustfed.local/audit",
	}
}

// withDefaults fills what dev mode implies and the derived defaults. The
// temporary data dir of dev mode is created by New, not here.
func (c Config) withDefaults() Config {
	if c.Dev {
		if c.NodeID == "" {
			c.NodeID = "dev"
		}
		c.Bootstrap = true
		c.RaftFastTimeouts = true
	}
	if c.BootstrapNode != "" && c.BootstrapNode == c.NodeID {
		c.Bootstrap, c.Join = true, ""
	}
	if c.AdminTokenFile == "" && c.DataDir != "" {
		c.AdminTokenFile = filepath.Join(c.DataDir, "admin.token")
	}
	if c.RaftCommitTimeout == 0 {
		c.RaftCommitTimeout = DefaultConfig().RaftCommitTimeout
	}
	return c
}

// Validate checks every setting and reports every bad one at once (an
// errors.Join of errors that each name the setting's flag).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(c.checkDev())
	add(c.checkAddrs())
	add(c.checkIdentity())
	add(c.checkTLS())
	add(c.checkDurations())
	add(c.checkLimits())
	add(c.checkCascades())
	add(c.checkAudit())
	return errors.Join(errs...)
}

// checkDev refuses what dev mode must not do.
func (c Config) checkDev() error {
	var errs []error
	if c.Dev && c.Join != "" {
		errs = append(errs, errors.New("-dev runs a single node: -join is not allowed"))
	}
	if c.Dev {
		for _, a := range []struct{ name, addr string }{{"-raft-addr", c.RaftAddr}, {"-grpc-addr", c.GRPCAddr}, {"-http-addr", c.HTTPAddr}} {
			if !isLoopback(a.addr) {
				errs = append(errs, fmt.Errorf("-dev binds to loopback only: %s %q is not a loopback address", a.name, a.addr))
			}
		}
	}
	if c.UnauditedDecisions && !c.Dev {
		errs = append(errs, errors.New("-unaudited-decisions is only for measurements in -dev mode: every decision is audited otherwise"))
	}
	return errors.Join(errs...)
}

// checkAddrs refuses a malformed address: listen addresses need a port in
// 0..65535 (the host may be empty), addresses other servers dial a host
// and a port in 1..65535; none takes a scheme or a path.
func (c Config) checkAddrs() error {
	var errs []error
	listen, dial := consensus.CheckListenAddress, consensus.CheckAddress
	for _, a := range []struct {
		name, addr string
		optional   bool
		check      func(string) error
	}{
		{"-raft-addr", c.RaftAddr, false, listen}, {"-grpc-addr", c.GRPCAddr, false, listen}, {"-http-addr", c.HTTPAddr, false, listen},
		{"-debug-addr", c.DebugAddr, true, listen}, {"-advertise-api", c.AdvertiseAPI, true, dial}, {"-advertise-raft", c.AdvertiseRaft, true, dial},
		{"-join", c.Join, true, dial},
	} {
		if a.optional && a.addr == "" {
			continue
		}
		if err := a.check(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %w", a.name, err))
		}
	}
	if host, _, _ := net.SplitHostPort(c.GRPCAddr); c.AdvertiseAPI == "" && (host == "" || net.ParseIP(host).IsUnspecified()) {
		errs = append(errs, fmt.Errorf("-grpc-addr %q listens on every interface: set -advertise-api to the address other servers dial", c.GRPCAddr))
	}
	if c.DebugAddr != "" && !isLoopback(c.DebugAddr) {
		errs = append(errs, fmt.Errorf("-debug-addr %q is not a loopback address: the profiles have no authentication", c.DebugAddr))
	}
	return errors.Join(errs...)
}

func (c Config) checkIdentity() error {
	var errs []error
	if c.DataDir == "" && !c.Dev {
		errs = append(errs, errors.New("-data-dir is required (or use -dev)"))
	}
	if c.NodeID == "" {
		errs = append(errs, errors.New("-node-id is required (or use -dev)"))
	}
	if c.BootstrapNode != "" && c.BootstrapNode != c.NodeID && c.Join == "" {
		errs = append(errs, fmt.Errorf("-bootstrap-node %s names another node: this one (%s) needs -join", c.BootstrapNode, c.NodeID))
	}
	if c.Bootstrap && c.Join != "" && !c.Dev {
		errs = append(errs, errors.New("-bootstrap and -join exclude each other: bootstrap one node, join the others to it"))
	}
	return errors.Join(errs...)
}

func (c Config) checkTLS() error {
	var errs []error
	if !c.Dev && (c.TLSCA == "" || c.TLSCert == "" || c.TLSKey == "") {
		errs = append(errs, errors.New("-tls-ca, -tls-cert and -tls-key are required outside -dev (create them with: trustfed ca init, trustfed ca issue-node)"))
	}
	if c.TLSCAKey != "" && c.TLSCA == "" {
		errs = append(errs, errors.New("-tls-ca-key needs -tls-ca (the certificate of that key)"))
	}
	return errors.Join(errs...)
}

// checkDurations checks the lifetimes and the log settings.
func (c Config) checkDurations() error {
	var errs []error
	if c.MemberCertTTL < time.Minute || c.MemberCertTTL > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("-member-cert-ttl %s is out of range 1m..168h", c.MemberCertTTL))
	}
	if c.BootstrapTokenTTL < state.MinTokenTTL || c.BootstrapTokenTTL > state.MaxTokenTTL {
		errs = append(errs, fmt.Errorf("-bootstrap-token-ttl %s is out of range %s..%s", c.BootstrapTokenTTL, state.MinTokenTTL, state.MaxTokenTTL))
	}
	if c.RaftCommitTimeout < time.Millisecond || c.RaftCommitTimeout > time.Second {
		errs = append(errs, fmt.Errorf("-raft-commit-timeout %s is out of range 1ms..1s", c.RaftCommitTimeout))
	}
	if _, err := newLogger(c.LogLevel, c.LogFormat, io.Discard); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkLimits checks the rate limits and stream caps.
func (c Config) checkLimits() error {
	var errs []error
	l := c.Limits
	for _, r := range []struct {
		name string
		lim  registry.Limit
	}{{"-rate-checks", l.Checks}, {"-rate-writes", l.Writes}, {"-rate-reads", l.Reads}} {
		if r.lim.PerSecond < 0 || math.IsNaN(r.lim.PerSecond) || math.IsInf(r.lim.PerSecond, 0) {
			errs = append(errs, fmt.Errorf("%s %v: want a number of calls per second >= 0 (0 = unlimited)", r.name, r.lim.PerSecond))
		}
		if r.lim.PerSecond > 0 && r.lim.Burst < 1 {
			errs = append(errs, fmt.Errorf("%s-burst %d: want at least 1", r.name, r.lim.Burst))
		}
	}
	if l.WatchStreamsPerOrg < 0 {
		errs = append(errs, fmt.Errorf("-watch-streams-per-org %d: want >= 0 (0 = unlimited)", l.WatchStreamsPerOrg))
	}
	return errors.Join(errs...)
}

func (c Config) checkCascades() error {
	if c.CascadeDeadline <= 0 || c.CascadeEscalateAt <= 0 || c.CascadeEscalateAt > 1 || c.CascadeWorkers <= 0 {
		return errors.New("-cascade-deadline and -cascade-workers must be positive, -cascade-escalate-at within (0,1]")
	}
	return nil
}

func (c Config) checkAudit() error {
	if c.AuditOrigin == "" || strings.ContainsAny(c.AuditOrigin, " +\n") {
		return fmt.Errorf("-audit-origin %q must be a non-empty name without spaces or '+'", c.AuditOrigin)
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
