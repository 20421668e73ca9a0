// Package testserver starts a real trustfed dev server in the test's own
// process: real Raft on disk under t.TempDir(), real gRPC and HTTPS on
// ports the kernel picks, the dev admin token and admin key. It is stopped
// (every goroutine and port) in t.Cleanup.
package testserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/server"
)

// Dev is a running in-process dev server.
type Dev struct {
	*server.Server
	Info server.DevInfo // admin token, admin key file, addresses
}

// StartDev starts a dev server and returns once it is ready (it holds its
// signing key, the bootstrap admin token and the dev admin). set may change
// the configuration first.
func StartDev(t testing.TB, set ...func(*server.Config)) *Dev {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Dev = true
	cfg.DataDir = t.TempDir()
	cfg.RaftAddr, cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.AuditOrigin = "test.trustfed.local/audit"
	cfg.LogOutput = io.Discard
	if testing.Verbose() {
		cfg.LogOutput = os.Stderr
	}
	cfg.Version = "test"
	ready := make(chan server.DevInfo, 1)
	cfg.DevReady = func(d server.DevInfo) { ready <- d }
	for _, f := range set {
		f(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start dev server: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev server stopped with: %v", err)
		}
	})
	select {
	case d := <-ready:
		return &Dev{Server: srv, Info: d}
	case err := <-done:
		done <- err // for the cleanup
		t.Fatalf("dev server stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("dev server not ready after 60s")
	}
	return nil
}

// Env is the environment the CLI reads to reach this server as its
// bootstrap admin (TRUSTFED_ADDR, _TOKEN, _CACERT and _ADMIN_KEY).
func (d *Dev) Env() map[string]string {
	return map[string]string{
		client.EnvAddr:       d.GRPCAddr(),
		client.EnvToken:      strings.TrimSpace(d.Info.AdminToken),
		client.EnvCACert:     d.CAFile(),
		"TRUSTFED_ADMIN_KEY": d.Info.AdminKeyFile,
	}
}

// Client dials the server's gRPC API as its bootstrap admin; the connection
// is closed in t.Cleanup.
func (d *Dev) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(t.Context(), client.Config{Addr: d.GRPCAddr(), Token: d.Info.AdminToken, CACertFile: d.CAFile(), Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("dial the dev server: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Get GETs path over HTTPS as the bootstrap admin and returns the status
// code and the body.
func (d *Dev) Get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	pem, err := os.ReadFile(d.CAFile())
	if err != nil {
		t.Fatalf("read the CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+d.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+d.Info.AdminToken)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read the body: %v", path, err)
	}
	return resp.StatusCode, body
}
