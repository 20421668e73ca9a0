package server

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func validConfig(t *testing.T) Config {
	c := DefaultConfig()
	c.NodeID, c.DataDir, c.TLSCA, c.TLSCert, c.TLSKey = "n2", t.TempDir(), "ca.pem", "n2.pem", "n2-key.pem"
	c.RaftAddr, c.GRPCAddr, c.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.MemberCertTTL, c.AuditOrigin = time.Hour, "test/audit"
	return c
}

// A bad address fails at start, naming its flag: never a server that runs
// with, or advertises, an address nobody can dial.
func TestConfigAddresses(t *testing.T) {
	c := validConfig(t)
	c.Join, c.AdvertiseAPI, c.AdvertiseRaft = "10.0.0.1:7443", "n2.example.org:7443", "n2.example.org:7000"
	require.NoError(t, c.Validate())
	c = validConfig(t)
	c.RaftAddr, c.GRPCAddr, c.AdvertiseAPI = ":7000", "0.0.0.0:7443", "n2.example.org:7443"
	require.NoError(t, c.Validate(), "a listen address may leave the host out")

	for _, tc := range []struct {
		set  func(*Config)
		want string
	}{
		{func(c *Config) { c.RaftAddr = "127.0.0.1:99999" }, `-raft-addr "127.0.0.1:99999": port "99999" is not in 0..65535`},
		{func(c *Config) { c.GRPCAddr = "127.0.0.1" }, `-grpc-addr "127.0.0.1" is not host:port`},
		{func(c *Config) { c.HTTPAddr = "https://127.0.0.1:8443" }, `-http-addr "https://127.0.0.1:8443" must be host:port, without a scheme`},
		{func(c *Config) { c.Join = "127.0.0.1:0" }, `-join "127.0.0.1:0": port "0" is not in 1..65535`},
		{func(c *Config) { c.Join = "10.0.0.1:7443/v1" }, `-join "10.0.0.1:7443/v1" must be host:port, without a path`},
		{func(c *Config) { c.AdvertiseAPI = ":7443" }, `-advertise-api ":7443" has no host`},
		{func(c *Config) { c.AdvertiseRaft = "n2.example.org:70000" }, `-advertise-raft "n2.example.org:70000": port "70000" is not in 1..65535`},
		{func(c *Config) { c.GRPCAddr = "0.0.0.0:7443" }, `-grpc-addr "0.0.0.0:7443" listens on every interface: set -advertise-api`},
		{func(c *Config) { c.GRPCAddr = ":7443" }, `-grpc-addr ":7443" listens on every interface: set -advertise-api`},
		{func(c *Config) { c.DebugAddr = "0.0.0.0:6060" }, `-debug-addr "0.0.0.0:6060" is not a loopback address`},
	} {
		c := validConfig(t)
		tc.set(&c)
		require.ErrorContains(t, c.Validate(), tc.want)
	}
}

// Validate reports every bad setting at once, each naming its flag, not
// only the first one it meets.
func TestConfigValidateReportsEveryField(t *testing.T) {
	c := validConfig(t)
	c.DataDir, c.NodeID = "", ""
	c.TLSKey = ""
	c.MemberCertTTL = time.Second
	c.BootstrapTokenTTL = 0
	c.LogLevel, c.LogFormat = "loud", "xml"
	c.Limits.Checks.PerSecond = math.NaN()
	c.Limits.Writes.Burst = 0
	c.Limits.WatchStreamsPerOrg = -1
	c.CascadeWorkers = 0
	c.AuditOrigin = "a b"
	c.UnauditedDecisions = true
	c.RaftCommitTimeout = 2 * time.Second
	err := c.Validate()
	for _, want := range []string{
		"-data-dir is required", "-node-id is required", "-tls-ca, -tls-cert and -tls-key are required",
		"-member-cert-ttl 1s is out of range", "-bootstrap-token-ttl 0s is out of range",
		`-log-level "loud"`, `-log-format "xml"`, "-rate-checks NaN", "-rate-writes-burst 0", "-watch-streams-per-org -1",
		"-cascade-workers must be positive", `-audit-origin "a b"`, "-unaudited-decisions is only for measurements in -dev mode",
		"-raft-commit-timeout 2s is out of range",
	} {
		require.ErrorContains(t, err, want)
	}
}

// Dev mode fills its defaults and refuses what it must not do.
func TestConfigDev(t *testing.T) {
	c := DefaultConfig()
	c.Dev = true
	require.NoError(t, c.Validate(), "-dev needs no other setting")
	d := c.withDefaults()
	require.Equal(t, "dev", d.NodeID)
	require.True(t, d.Bootstrap && d.RaftFastTimeouts)

	c.Join, c.HTTPAddr = "127.0.0.1:7443", "0.0.0.0:8443"
	err := c.Validate()
	require.ErrorContains(t, err, "-dev runs a single node: -join is not allowed")
	require.ErrorContains(t, err, `-dev binds to loopback only: -http-addr "0.0.0.0:8443" is not a loopback address`)
}

// -bootstrap-node: the named node bootstraps (its -join is ignored), the
// others must join.
func TestBootstrapNode(t *testing.T) {
	c := DefaultConfig()
	c.DataDir, c.TLSCA, c.TLSCert, c.TLSKey = t.TempDir(), "ca.pem", "n.pem", "n-key.pem"
	c.BootstrapNode, c.Join = "trustfed-0", "trustfed-0.trustfed:7443"
	c.NodeID = "trustfed-0"
	require.NoError(t, c.Validate())
	d := c.withDefaults()
	require.True(t, d.Bootstrap)
	require.Empty(t, d.Join)
	c.NodeID = "trustfed-1"
	require.NoError(t, c.Validate())
	d = c.withDefaults()
	require.False(t, d.Bootstrap)
	require.Equal(t, "trustfed-0.trustfed:7443", d.Join)
	c.Join = ""
	require.ErrorContains(t, c.Validate(), "-bootstrap-node trustfed-0 names another node: this one (trustfed-1) needs -join")
}
