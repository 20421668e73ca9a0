package system_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

var loopbackPorts = []string{"-raft-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-http-addr", "127.0.0.1:0"}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// adminToken waits for the bootstrap token file in dataDir.
func adminToken(t testing.TB, dataDir string) string {
	t.Helper()
	var tok string
	testutil.Eventually(t, 20*time.Second, "admin.token written", func() error {
		b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
		tok = strings.TrimSpace(string(b))
		return err
	})
	return tok
}

// dial returns an SDK client for a server, authenticated with token.
func dial(t testing.TB, s *testutil.Server, caFile, token string) *client.Client {
	t.Helper()
	c, err := client.New(ctxT(t), client.Config{Addr: s.Addrs.GRPCAddr, Token: token, CACertFile: caFile, Timeout: 20 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitServing waits until the server answers an authenticated linearizable read.
func waitServing(t testing.TB, c *client.Client) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, "server serves linearizable reads", func() error {
		_, err := c.Registry().ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{PageSize: 1})
		return err
	})
}

// logContains reports whether the server's log holds s.
func logContains(srv *testutil.Server, s string) error {
	b, err := os.ReadFile(filepath.Join(srv.DataDir, "server.log"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(b), s) {
		return fmt.Errorf("log has no %q yet", s)
	}
	return nil
}

func nextID(n *int64) int64 { return atomic.AddInt64(n, 1) }

// caPool trusts the CA certificate in caFile alone.
func caPool(t testing.TB, caFile string) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem), "no certificate in %s", caFile)
	return pool
}

// httpsClient speaks TLS 1.3 to servers whose certificates caFile's CA
// issued; its idle connections close when the test ends.
func httpsClient(t testing.TB, caFile string) *http.Client {
	t.Helper()
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, caFile), MinVersion: tls.VersionTLS13}}}
	t.Cleanup(hc.CloseIdleConnections)
	return hc
}

// pair is a dev server with two ACTIVE organisations, an agreement between
// them, and a member node of the first: the set-up of most decision tests.
type pair struct {
	d      *devServer
	admin  *client.Client // the dev admin token's
	fed    *testutil.Federation
	member *client.Client // a member node of the first organisation
}

// startFederation starts a dev server (extra flags), dials it with the dev
// admin token and accredits the federation's passport issuer: where every
// test that enrols organisations begins.
func startFederation(tb testing.TB, extra ...string) (*devServer, *client.Client, *testutil.Federation) {
	tb.Helper()
	d, fed := startDev(tb, extra...), testutil.NewFederation(tb)
	admin := dial(tb, d.srv, d.caFile, d.token)
	waitServing(tb, admin)
	accredit(tb, admin, fed, d.admins)
	return d, admin, fed
}

// startPair starts a dev server (extra flags) and enrols a at level la and
// b at level lb, with an agreement covering actions.
func startPair(tb testing.TB, a string, la uint32, b string, lb uint32, actions []string, extra ...string) pair {
	tb.Helper()
	var p pair
	p.d, p.admin, p.fed = startFederation(tb, extra...)
	enrol(tb, p.admin, p.fed, a, la)
	enrol(tb, p.admin, p.fed, b, lb)
	agree(tb, p.admin, p.fed, a, b, actions...)
	p.member = memberOf(tb, p.admin, p.d.srv, p.d.caFile, p.fed, a)
	return p
}
