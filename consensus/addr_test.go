package consensus

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckAddress(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:7000", "[::1]:1", "n1.example.org:65535", "localhost:8443"} {
		require.NoError(t, CheckAddress(addr), addr)
		require.NoError(t, CheckListenAddress(addr), addr)
	}
	for _, addr := range []string{"127.0.0.1:0", ":7000", "0.0.0.0:0"} {
		require.Error(t, CheckAddress(addr), addr)
		require.NoError(t, CheckListenAddress(addr), "listen %s", addr)
	}
	for addr, want := range map[string]string{
		"":                       "is required",
		"127.0.0.1:99999":        `port "99999" is not in 1..65535`,
		"127.0.0.1:65536":        "not in 1..65535",
		"127.0.0.1:-1":           "not in 1..65535",
		"127.0.0.1:http":         `port "http"`,
		"127.0.0.1":              "not host:port",
		"https://127.0.0.1:7000": "without a scheme",
		"127.0.0.1:7000/raft":    "without a path",
		"127.0.0.1:007000":       "not in 1..65535",
		"user@127.0.0.1:7000":    "without a path, user",
		"127.0.0.1:7000:7001":    "not host:port",
		"n1.example.org:+7000":   "not in 1..65535",
	} {
		err := CheckAddress(addr)
		require.Error(t, err, addr)
		require.Contains(t, err.Error(), want, addr)
		require.Error(t, CheckListenAddress(addr), "listen %s", addr)
	}
}
