package main

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

// A bad server flag is a usage error (exit 2) naming the flag, and every
// bad flag is reported at once; nothing starts.
func TestServerFlagErrors(t *testing.T) {
	code, _, stderr := runCLI(nil, "server", "-dev", "-data-dir", t.TempDir(), "-raft-addr", "127.0.0.1:99999", "-http-addr", "0.0.0.0:8443", "-rate-reads", "-1")
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, `-raft-addr "127.0.0.1:99999": port "99999" is not in 0..65535`)
	require.Contains(t, stderr, `-dev binds to loopback only: -http-addr "0.0.0.0:8443" is not a loopback address`)
	require.Contains(t, stderr, `-rate-reads -1: want a number of calls per second >= 0`)

	code, _, stderr = runCLI(nil, "server", "-dev", "extra")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, `unexpected argument "extra"`)
}

// The flags keep their defaults: the server a bare `trustfed server -dev`
// starts is the one it started before the flags became a server.Config.
func TestServerFlagDefaults(t *testing.T) {
	cfg, err := parseServerFlags([]string{"--dev"}, nil, nil)
	require.NoError(t, err)
	require.True(t, cfg.Dev)
	require.Equal(t, "127.0.0.1:7000", cfg.RaftAddr)
	require.Equal(t, "127.0.0.1:7443", cfg.GRPCAddr)
	require.Equal(t, "127.0.0.1:8443", cfg.HTTPAddr)
	require.Equal(t, "trustfed.local/audit", cfg.AuditOrigin)
	require.Equal(t, 256, cfg.CascadeWorkers)
	require.NotNil(t, cfg.DevReady, "-dev prints its banner")
	require.Equal(t, buildVersion(), cfg.Version)
}

// `trustfed version` and `trustfed --version` print the version, the Go
// version and the commit; an injected version wins.
func TestVersion(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	version, commit = "v1.2.3-test", "0123abcd"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runCLI(nil, args...)
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "trustfed v1.2.3-test ("+runtime.Version()+", commit 0123abcd)\n", stdout, args)
	}
	version, commit = "", ""
	require.NotEmpty(t, buildVersion(), "without -ldflags: the VCS revision or dev")
}
