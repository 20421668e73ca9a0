package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/logging"
	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/server"
)

// lockedBuffer is a log sink the server writes to while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A node started without -bootstrap or -join, with no cluster state, says
// what to do — in its log at start and in /readyz — naming the flags.
func TestLoneNodeSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	pki := testutil.NewClusterPKI(t, t.TempDir())
	files := pki.NodeFiles(t, "n1") // -tls-ca CA -tls-cert C -tls-key K
	var logs lockedBuffer
	cfg := server.DefaultConfig()
	cfg.NodeID, cfg.DataDir = "n1", filepath.Join(dir, "n1")
	cfg.RaftAddr, cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLSCA, cfg.TLSCert, cfg.TLSKey = files[1], files[3], files[5]
	cfg.RaftFastTimeouts = true
	cfg.LogOutput = &logs
	srv, err := server.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	pool, err := attestation.LoadCertPool(pki.CAFile)
	require.NoError(t, err)
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(hc.CloseIdleConnections)
	testutil.Eventually(t, 20*time.Second, "/readyz names -bootstrap and -join", func() error {
		resp, err := hc.Get("https://" + srv.HTTPAddr() + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var r struct{ Reason string }
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(r.Reason, "-bootstrap") || !strings.Contains(r.Reason, "-join HOST:PORT") {
			return fmt.Errorf("%d %q", resp.StatusCode, r.Reason)
		}
		return nil
	})
	require.Contains(t, logs.String(), "no known peers: this node is in no cluster. Start the first node of a new cluster with -bootstrap")
}

// A -bootstrap node reports SERVING on the standard gRPC health service (no
// credentials needed) only once its bootstrap admin token is stored: the
// token file read right after works at once.
func TestBootstrapNodeHealthMeansTokenWorks(t *testing.T) {
	pki := testutil.NewClusterPKI(t, t.TempDir())
	files := pki.NodeFiles(t, "n1")
	cfg := server.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.Bootstrap = "n1", t.TempDir(), true
	cfg.RaftAddr, cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLSCA, cfg.TLSCert, cfg.TLSKey = files[1], files[3], files[5]
	cfg.RaftFastTimeouts = true
	cfg.LogOutput = io.Discard
	srv, err := server.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	anon, err := client.New(t.Context(), client.Config{Addr: srv.GRPCAddr(), CACertFile: pki.CAFile, Timeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = anon.Close() })
	health := healthpb.NewHealthClient(anon.Conn())
	testutil.Eventually(t, 30*time.Second, "SERVING", func() error {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		if resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	tok, err := os.ReadFile(srv.AdminTokenFile())
	require.NoError(t, err)
	admin, err := client.New(t.Context(), client.Config{Addr: srv.GRPCAddr(), CACertFile: pki.CAFile, Token: strings.TrimSpace(string(tok)), Timeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close() })
	st, err := admin.Cluster().Status(t.Context(), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	require.True(t, st.Ready)

	_, err = health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "other"})
	require.Equal(t, codes.NotFound, status.Code(err))
}

// The server's JSON logs, Raft's lines included, carry each key once with
// printable values.
func TestServerJSONLogsHaveUniqueKeys(t *testing.T) {
	var logs lockedBuffer
	d := testserver.StartDev(t, func(c *server.Config) {
		c.LogFormat, c.LogLevel, c.LogOutput = "json", "debug", &logs
	})
	d.Get(t, "/v1/organizations") // a request: registry and audit lines
	out := logs.String()
	require.Contains(t, out, `"logger":"raft"`)
	require.NoError(t, logging.CheckJSONLines(strings.NewReader(out)))
}
