package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/server"
)

// A dev server started in-process reports where it listens and writes the
// same to addrs.json; its admin token file holds the token it reports.
func TestDevServerInProcess(t *testing.T) {
	d := testserver.StartDev(t)
	require.Equal(t, "dev", d.NodeID())
	addrs, err := server.ReadAddrs(d.DataDir())
	require.NoError(t, err)
	require.Equal(t, server.Addrs{NodeID: "dev", GRPCAddr: d.GRPCAddr(), HTTPAddr: d.HTTPAddr(), RaftAddr: d.RaftAddr(), CACert: d.CAFile()}, addrs)
	require.Equal(t, filepath.Join(d.DataDir(), "admin.token"), d.AdminTokenFile())
	tok, err := os.ReadFile(d.AdminTokenFile())
	require.NoError(t, err)
	require.Equal(t, d.Info.AdminToken, strings.TrimSpace(string(tok)))
	require.FileExists(t, d.Info.AdminKeyFile)
	require.Equal(t, d.GRPCAddr(), d.Info.GRPCAddr)
}

// -debug-addr serves the runtime profiles until the server stops.
func TestDebugProfiles(t *testing.T) {
	d := testserver.StartDev(t, func(c *server.Config) { c.DebugAddr = "127.0.0.1:0" })
	resp, err := http.Get("http://" + d.DebugAddr() + "/debug/pprof/")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "goroutine", "the profile index lists the goroutine profile")
}

// Run returns once its context ends, and the ports are free again.
func TestRunStopsWithContext(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.Dev, cfg.DataDir, cfg.LogOutput = true, t.TempDir(), io.Discard
	cfg.RaftAddr, cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	srv, err := server.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	require.NoError(t, srv.Close(), "Close after Run is a no-op")
	cfg.GRPCAddr, cfg.HTTPAddr = srv.GRPCAddr(), srv.HTTPAddr()
	cfg.DataDir = t.TempDir()
	again, err := server.New(cfg)
	require.NoError(t, err, "the ports are free once Run returned")
	require.NoError(t, again.Close())
}

// A bad configuration fails New before it binds or writes anything.
func TestNewRefusesBadConfig(t *testing.T) {
	cfg := server.DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	_, err := server.New(cfg)
	require.ErrorContains(t, err, "-node-id is required")
	require.NoDirExists(t, cfg.DataDir)
}

// /metrics reports the running build as trustfed_build_info{version,
// goversion,revision} 1, with the version the server was given.
func TestBuildInfoMetric(t *testing.T) {
	d := testserver.StartDev(t, func(c *server.Config) { c.Version = "v9.9.9-test" })
	code, body := d.Get(t, "/metrics")
	require.Equal(t, http.StatusOK, code, string(body))
	m := testutil.ParseMetrics(t, bytes.NewReader(body))
	b := server.ReadBuildInfo("v9.9.9-test", "")
	v, ok := m.Value("trustfed_build_info", map[string]string{"version": "v9.9.9-test", "goversion": runtime.Version(), "revision": b.Revision})
	require.True(t, ok, "trustfed_build_info with the build's labels")
	require.Equal(t, 1.0, v)
}

// Status reports the version the server was given.
func TestStatusReportsVersion(t *testing.T) {
	d := testserver.StartDev(t, func(c *server.Config) { c.Version = "v9.9.9-test" })
	st, err := d.Client(t).Cluster().Status(t.Context(), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	require.Equal(t, "v9.9.9-test", st.GetVersion())
}
