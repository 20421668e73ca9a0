package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// -debug-addr serves the runtime profiles until the server stops, and only
// on loopback: the profiles have no authentication.
func TestDebugProfiles(t *testing.T) {
	f := serverFlags{dev: true, debugAddr: "0.0.0.0:6060", raftAddr: "127.0.0.1:0", grpcAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0",
		dataDir: t.TempDir(), memberCertTTL: time.Hour, tokenTTL: time.Hour, auditOrigin: "test/audit"}
	err := f.resolve()
	require.ErrorContains(t, err, `-debug-addr "0.0.0.0:6060" is not a loopback address`)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveDebug(ctx, lis, slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + lis.Addr().String() + "/debug/pprof/")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.Contains(string(body), "goroutine"), "the profile index lists the goroutine profile")
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the debug server did not stop with its context")
	}
}
