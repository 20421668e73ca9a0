package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
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
