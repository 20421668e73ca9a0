package main

import (
	"bufio"
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/server"
)

const systemdUnit = "../../deploy/systemd/trustfed.service"

// unitDirectives are the key=value lines of a unit (a key may repeat).
func unitDirectives(t *testing.T, b []byte) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "not a directive: %q", line)
		out[k] = append(out[k], v)
	}
	require.NoError(t, sc.Err())
	return out
}

// TestSystemdUnit: the unit sandboxes the server (what an operator
// expects of a network daemon holding keys), writes only its data dir,
// which is the example configuration's, and starts with -config after a
// -validate. With systemd-analyze (Debian's systemd package), the unit
// verifies without a warning and its exposure is low.
func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile(systemdUnit)
	require.NoError(t, err)
	d := unitDirectives(t, b)
	for k, want := range map[string]string{
		"ProtectSystem": "strict", "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes",
		"PrivateDevices": "yes", "CapabilityBoundingSet": "", "AmbientCapabilities": "", "DynamicUser": "yes",
		"StateDirectory": "trustfed", "RestartPreventExitStatus": "2", "KillSignal": "SIGTERM",
	} {
		require.Equal(t, []string{want}, d[k], k)
	}
	require.Equal(t, []string{"/usr/local/bin/trustfed server -config /etc/trustfed/trustfed.yaml"}, d["ExecStart"])
	require.Equal(t, []string{"/usr/local/bin/trustfed server -config /etc/trustfed/trustfed.yaml -validate"}, d["ExecStartPre"])

	// The one writable path is the data dir of the example configuration.
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	cfg := server.DefaultConfig()
	registerServerFlags(fs, &cfg)
	s := &serverSettings{fs: fs, explicit: map[string]bool{}}
	s.applyFile("../../deploy/config/trustfed.yaml")
	require.NoError(t, s.err())
	require.Equal(t, []string{cfg.DataDir}, d["ReadWritePaths"])
	require.Equal(t, "/var/lib/"+d["StateDirectory"][0], cfg.DataDir)

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian: apt-get install systemd): the unit was checked by the rules above only")
	}
	// verify needs the ExecStart binary to exist: point it at one that does.
	dir := t.TempDir()
	self, err := os.Executable()
	require.NoError(t, err)
	unit := filepath.Join(dir, "trustfed.service")
	require.NoError(t, os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/trustfed"), []byte(self)), 0o644))
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Empty(t, strings.TrimSpace(string(out)), "systemd-analyze verify warns")

	// A misspelt directive is what verify catches (it only warns: the
	// test fails on any output).
	bad := filepath.Join(dir, "bad.service")
	require.NoError(t, os.WriteFile(bad, bytes.Replace(b, []byte("ProtectSystem=strict"), []byte("ProtectSystem=strickt"), 1), 0o644))
	out, _ = exec.Command(analyze, "verify", bad).CombinedOutput()
	require.Contains(t, string(out), "strickt")

	out, err = exec.Command(analyze, "security", "--offline=true", unit).CombinedOutput()
	require.NoError(t, err, "%s", out)
	m := regexp.MustCompile(`Overall exposure level for trustfed.service: ([0-9.]+)`).FindSubmatch(out)
	require.Len(t, m, 2, "%s", out)
	exposure, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	require.LessOrEqual(t, exposure, 2.0, "systemd-analyze security exposure")
}
