package main

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/server"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trustfed.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

// Flags beat TRUSTFED_* variables, which beat the -config file, which
// beats the defaults: each setting below comes from a different level.
func TestServerConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, `
node-id: from-file
data-dir: `+dir+`
grpc-addr: 127.0.0.1:17443
http-addr: 127.0.0.1:18443
cascade-workers: 7
raft-commit-timeout: 20ms
bootstrap: true
`)
	env := map[string]string{"TRUSTFED_GRPC_ADDR": "127.0.0.1:27443", "TRUSTFED_CASCADE_WORKERS": "9", "TRUSTFED_NODE_ID": "from-env"}
	cfg, validate, err := parseServerConfig([]string{"-config", path, "-node-id", "from-flag", "-dev"}, func(k string) string { return env[k] }, nil, nil)
	require.NoError(t, err)
	require.False(t, validate)
	require.Equal(t, "from-flag", cfg.NodeID, "flag > env > file")
	require.Equal(t, "127.0.0.1:27443", cfg.GRPCAddr, "env > file")
	require.Equal(t, 9, cfg.CascadeWorkers, "env > file")
	require.Equal(t, "127.0.0.1:18443", cfg.HTTPAddr, "file > default")
	require.Equal(t, 20*time.Millisecond, cfg.RaftCommitTimeout, "file > default")
	require.Equal(t, dir, cfg.DataDir)
	require.True(t, cfg.Bootstrap)
	require.Equal(t, server.DefaultConfig().RaftAddr, cfg.RaftAddr, "default")

	// The file may come from TRUSTFED_CONFIG too.
	cfg, _, err = parseServerConfig([]string{"-dev"}, func(k string) string {
		if k == "TRUSTFED_CONFIG" {
			return path
		}
		return ""
	}, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "from-file", cfg.NodeID)
}

// Every flag of trustfed server is a key of the file and a variable.
func TestServerConfigEveryFlagHasAKey(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg := server.DefaultConfig()
	registerServerFlags(fs, &cfg)
	s := &serverSettings{fs: fs, explicit: map[string]bool{}}
	var body strings.Builder
	fs.VisitAll(func(f *flag.Flag) { body.WriteString(f.Name + ": " + f.DefValue + "\n") })
	s.applyFile(writeConfig(t, body.String()))
	require.NoError(t, s.err())
	require.Equal(t, "TRUSTFED_RATE_CHECKS_BURST", envName("rate-checks-burst"))
}

// -validate reports every bad setting at once, each naming its key and
// where it came from, and exits 2 without starting; a good configuration
// prints "configuration OK" and exits 0.
func TestServerConfigValidate(t *testing.T) {
	path := writeConfig(t, `
dev: true
data-dir: `+t.TempDir()+`
raft-adr: 127.0.0.1:7000
cascade-workers: many
rate-reads: -1
join: [a, b]
`)
	code, stdout, stderr := runCLI(map[string]string{"TRUSTFED_MEMBER_CERT_TTL": "forever"}, "server", "-config", path, "-validate", "-http-addr", "0.0.0.0:8443")
	require.Equal(t, 2, code, stdout)
	for _, want := range []string{
		path + `:4: raft-adr: unknown key "raft-adr"`,
		path + `:5: cascade-workers: invalid value "many" for -cascade-workers: want an integer`,
		path + `:7: join: want a single value`,
		`TRUSTFED_MEMBER_CERT_TTL: invalid value "forever" for -member-cert-ttl: want a duration such as 10s or 5m`,
		`-rate-reads -1: want a number of calls per second >= 0`,
		`-dev binds to loopback only: -http-addr "0.0.0.0:8443" is not a loopback address`,
	} {
		require.Contains(t, stderr, want)
	}
	require.NotContains(t, stdout, "configuration OK")

	good := writeConfig(t, "dev: true\ndata-dir: "+t.TempDir()+"\n")
	code, stdout, stderr = runCLI(nil, "server", "-config", good, "-validate")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, "configuration OK\n", stdout)

	code, _, stderr = runCLI(nil, "server", "-config", filepath.Join(t.TempDir(), "missing.yaml"), "-validate")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "-config: open")
}

// The example configuration in deploy/ uses only known keys and good values.
func TestServerConfigExample(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg := server.DefaultConfig()
	registerServerFlags(fs, &cfg)
	s := &serverSettings{fs: fs, explicit: map[string]bool{}}
	s.applyFile("../../deploy/config/trustfed.yaml")
	require.NoError(t, s.err())
	require.Equal(t, "/var/lib/trustfed", cfg.DataDir)
	require.Equal(t, "registry.example.org/audit", cfg.AuditOrigin)
}

// `make run` says where the dev server's data is and keeps it in DEV_DATA
// (same federation and token next time); DEV_DATA= runs on a temporary dir.
func TestMakeRunKeepsDevData(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("no make here")
	}
	out, err := exec.Command("make", "-s", "-n", "-C", "../..", "run").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "dev data in")
	require.Regexp(t, `trustfed server -dev -data-dir \S+/\.dev-data`, string(out))
	out, err = exec.Command("make", "-s", "-n", "-C", "../..", "run", "DEV_DATA=").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Regexp(t, `trustfed server -dev\s*$`, strings.TrimSpace(string(out)))
}
