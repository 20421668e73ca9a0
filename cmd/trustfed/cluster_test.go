package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/trustfed/trustfed/registry"
)

func TestCLIClusterRecoverUsageErrors(t *testing.T) {
	empty := t.TempDir()
	withAddrs := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(withAddrs, "addrs.json"), []byte(`{"node_id":"n1","raft_addr":"127.0.0.1:7000"}`), 0o600))
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no data dir", []string{"cluster", "recover"}, "--data-dir is required"},
		{"no addrs.json", []string{"cluster", "recover", "--data-dir", empty}, "give --node-id and --raft-addr"},
		{"bad own address", []string{"cluster", "recover", "--data-dir", empty, "--node-id", "n1", "--raft-addr", "127.0.0.1:99999"}, "not in 1..65535"},
		{"server without id", []string{"cluster", "recover", "--data-dir", withAddrs, "--server", "127.0.0.1:7001"}, "want ID=RAFT_ADDR"},
		{"server bad address", []string{"cluster", "recover", "--data-dir", withAddrs, "--server", "n2=127.0.0.1:0"}, "raft address"},
		{"remove without id", []string{"cluster", "remove"}, "expects 1 argument"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(nil, tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Empty(t, stdout)
			require.True(t, strings.HasPrefix(stderr, "error: "), stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
	// A data dir without Raft state is refused (exit 1): nothing to recover.
	code, _, stderr := runCLI(nil, "cluster", "recover", "--data-dir", withAddrs)
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "holds no Raft state")
	require.NoFileExists(t, filepath.Join(withAddrs, "raft", "peers.json"))
}

// cluster repair moves a stopped server's Raft state, audit log and
// divergence marker aside (never deletes them); it refuses a data dir
// without Raft state and one whose Raft log a running server holds open.
func TestCLIClusterRepair(t *testing.T) {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	dir := t.TempDir()
	code, _, stderr := runCLI(nil, "cluster", "repair")
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, "--data-dir is required")
	code, _, stderr = runCLI(nil, "cluster", "repair", "--data-dir", dir)
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "holds no Raft state")

	require.NoError(t, os.Mkdir(filepath.Join(dir, "raft"), 0o700))
	db, err := bolt.Open(filepath.Join(dir, "raft", "raft.db"), 0o600, nil)
	require.NoError(t, err)
	code, _, stderr = runCLI(nil, "cluster", "repair", "--data-dir", dir)
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "still running")
	require.NoError(t, db.Close())

	require.NoError(t, os.Mkdir(filepath.Join(dir, "audit"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "audit", "audit.db"), []byte("audit"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "addrs.json"), []byte(`{}`), 0o600))
	d, err := registry.OpenDivergence(dir, nil)
	require.NoError(t, err)
	d.Mark(42, "forged level")
	code, stdout, stderr := runCLI(nil, "cluster", "repair", "--data-dir", dir, "-o", "json")
	require.Equal(t, 0, code, stderr)
	var out repaired
	require.NoError(t, json.Unmarshal([]byte(stdout), &out), stdout)
	require.True(t, out.Diverged)
	require.Equal(t, uint64(42), out.Index)
	require.Len(t, out.Moved, 3)
	for _, p := range repairParts {
		require.NoFileExists(t, filepath.Join(dir, p))
		require.True(t, exists(filepath.Join(out.Aside, p)), "%s moved aside", p)
	}
	require.FileExists(t, filepath.Join(dir, "addrs.json"), "the node's identity stays")
	again, err := registry.OpenDivergence(dir, nil)
	require.NoError(t, err)
	_, diverged := again.Status()
	require.False(t, diverged, "the repaired node no longer counts as diverged")
}
