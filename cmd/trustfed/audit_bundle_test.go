package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const bundleOrigin = "registry.trustfed.test/audit"

var bundleT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// newBundleFake is an audit fake serving two entries a page (so exports
// page through it).
func newBundleFake(t *testing.T) *auditFake {
	f := newAuditFake(t, bundleOrigin, bundleT0)
	f.pageSize = 2
	return f
}

func authFailure() *trustfedv1.AuditEntry {
	return &trustfedv1.AuditEntry{Type: "AUTH_FAILURE", AuthFailure: &trustfedv1.AuditAuthFailure{
		Method: "/trustfed.v1.AdminService/ApproveOrganization", Code: "Unauthenticated", Reason: "no token"}}
}

func TestAuditBundleUsageErrors(t *testing.T) {
	period := []string{"--since", "2026-03-01T00:00:00Z", "--until", "2026-04-01T00:00:00Z"}
	for _, args := range [][]string{
		append([]string{"audit", "export"}, period...),
		append([]string{"audit", "export", "--compliance", "pci"}, period...),
		{"audit", "export", "--compliance", "hipaa", "--since", "March", "--until", "2026-04-01T00:00:00Z"},
		{"audit", "export", "--compliance", "hipaa", "--since", "2026-04-01T00:00:00Z", "--until", "2026-03-01T00:00:00Z"},
		append([]string{"audit", "export", "--compliance", "hipaa", "--org", "Not An Org"}, period...),
		append([]string{"audit", "export", "--compliance", "hipaa", "--registry-key", "nonsense"}, period...),
		{"audit", "verify"},
		{"audit", "verify", "a.tar.gz", "--sth", "old.json"},
		{"audit", "verify", "a.tar.gz", "b.tar.gz"},
		{"audit", "replay", "extra"},
	} {
		code, _, stderr := runCLI(nil, args...)
		require.Equal(t, exitUsage, code, "%v: %s", args, stderr)
	}
}

func TestAuditExportAndVerify(t *testing.T) {
	f := newBundleFake(t)
	f.add(t, authFailure(), f.decision(t, "acme", "globex"), authFailure(), f.decision(t, "globex", "acme"), authFailure())
	env := startAuditFake(t, f)
	dir := t.TempDir()
	file := filepath.Join(dir, "evidence.tar.gz")
	export := []string{"audit", "export", "--compliance", "soc2", "--since", "2026-03-02T09:01:00Z", "--until", "2026-03-02T09:04:00Z", "-f", file}

	code, stdout, stderr := runCLI(env, append(export, "--registry-key", f.vkey(t))...)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stderr, "log entries scanned")
	require.Contains(t, stdout, "Bundle:")
	require.Contains(t, stdout, "(pinned)")
	require.Regexp(t, `Entries:\s+3 \(sequences 1\.\.3\), 2 signed decisions`, stdout)

	code, _, stderr = runCLI(env, export...)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "exists")

	code, stdout, stderr = runCLI(nil, "audit", "verify", file, "--registry-key", f.vkey(t))
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "(pinned)")
	require.Contains(t, stdout, "compliance SOC2")
	require.Contains(t, stdout, "E07-refused-attempts.json")

	code, stdout, _ = runCLI(nil, "audit", "verify", file)
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "TAKEN FROM THE BUNDLE")

	code, stdout, _ = runCLI(nil, "-o", "json", "audit", "verify", file)
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, `"entries": 3`)
	require.Contains(t, stdout, `"compliance": "SOC2"`)

	other := newBundleFake(t)
	code, _, stderr = runCLI(nil, "audit", "verify", file, "--registry-key", other.vkey(t))
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "does not verify")

	data, err := os.ReadFile(file)
	require.NoError(t, err)
	data[len(data)/2] ^= 0x40
	bad := filepath.Join(dir, "bad.tar.gz")
	require.NoError(t, os.WriteFile(bad, data, 0o644))
	code, _, stderr = runCLI(nil, "audit", "verify", bad)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "evidence bundle does not verify")

	// A registry whose published key is not the one pinned: the bundle is
	// not kept.
	file2 := filepath.Join(dir, "other.tar.gz")
	code, _, stderr = runCLI(env, append(export[:len(export)-1], file2, "--registry-key", other.vkey(t))...)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "not kept")
	_, err = os.Stat(file2)
	require.ErrorIs(t, err, os.ErrNotExist)
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, left, 2, "no temporary file is left behind")
}

func TestAuditVerifySTH(t *testing.T) {
	f := newBundleFake(t)
	f.add(t, authFailure(), authFailure(), authFailure())
	env := startAuditFake(t, f)
	old, err := f.GetSignedTreeHead(context.Background(), nil)
	require.NoError(t, err)
	data, err := protojson.Marshal(old)
	require.NoError(t, err)
	oldFile := filepath.Join(t.TempDir(), "sth.json")
	require.NoError(t, os.WriteFile(oldFile, data, 0o644))
	f.add(t, authFailure(), f.decision(t, "acme", "globex"))

	code, stdout, stderr := runCLI(env, "audit", "verify", "--sth", oldFile)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "only appended to")
	require.Contains(t, stdout, "saved in")
	code, stdout, stderr = runCLI(env, "audit", "verify", "--sth", oldFile, "--registry-key", f.vkey(t))
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "(pinned)")

	// A registry showing another history than the one saved.
	fork := f.fork()
	fork.add(t, authFailure(), f.decision(t, "acme", "initech"), authFailure(), authFailure(), authFailure())
	code, _, stderr = runCLI(startAuditFake(t, fork), "audit", "verify", "--sth", oldFile)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "does not verify")

	// Signed by another key than the one trusted.
	code, _, stderr = runCLI(env, "audit", "verify", "--sth", oldFile, "--registry-key", newBundleFake(t).vkey(t))
	require.Equal(t, exitError, code, stderr)
}

func TestAuditReplayCmd(t *testing.T) {
	f := newBundleFake(t)
	f.add(t, authFailure(), authFailure(), authFailure())
	env := startAuditFake(t, f)
	code, stdout, stderr := runCLI(env, "audit", "replay", "--registry-key", f.vkey(t))
	require.Equal(t, exitOK, code, stderr)
	require.Regexp(t, `Mismatches:\s+0`, stdout)
	require.Contains(t, stderr, "entries replayed")

	// A decision about organisations the log never registered.
	f.add(t, f.decision(t, "acme", "globex"))
	code, stdout, stderr = runCLI(env, "audit", "replay")
	require.Equal(t, exitError, code)
	require.Regexp(t, `Mismatches:\s+1`, stdout)
	require.Contains(t, stdout, "entry 3 (DECISION)")
	require.Contains(t, stderr, "replay found 1 entries")
}
