package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
