package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/audit"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// capturedAudit is an audit batcher's commit that keeps what it is given.
type capturedAudit struct {
	mu  sync.Mutex
	evs []*trustfedv1.AuditAuthFailure
}

func (c *capturedAudit) commit(_ context.Context, evs []*commandv1.AuditEvent) (auditCommit, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := uint64(len(c.evs))
	for _, ev := range evs {
		c.evs = append(c.evs, ev.GetAuthFailure())
	}
	return auditCommit{first: first, index: 1, term: 1}, nil
}

func (c *capturedAudit) all() []*trustfedv1.AuditAuthFailure {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*trustfedv1.AuditAuthFailure(nil), c.evs...)
}

func (c *capturedAudit) from(peer string) []*trustfedv1.AuditAuthFailure {
	var out []*trustfedv1.AuditAuthFailure
	for _, af := range c.all() {
		if af.Peer == peer {
			out = append(out, af)
		}
	}
	return out
}

// waitFor waits for an entry of method from peer whose reason holds want.
func (c *capturedAudit) waitFor(t *testing.T, method, peer, want string) *trustfedv1.AuditAuthFailure {
	t.Helper()
	var got *trustfedv1.AuditAuthFailure
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s refusal of %s audited", method, peer), func() error {
		for _, af := range c.from(peer) {
			if af.Method == method && strings.Contains(af.Reason, want) {
				got = af
				return nil
			}
		}
		return fmt.Errorf("entries from %s: %v", peer, c.from(peer))
	})
	return got
}

// auditingServer is a Server whose audit batcher runs and commits into a
// capturedAudit.
func auditingServer(t *testing.T) (*Server, *capturedAudit) {
	t.Helper()
	l, err := audit.OpenWith(filepath.Join(t.TempDir(), "audit.db"), audit.Options{NoSync: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	captured := &capturedAudit{}
	s := &Server{cfg: Config{NodeID: "n1"}, log: slog.New(slog.DiscardHandler), audit: l, limiter: newLimiter(Limits{}, time.Now)}
	s.batcher = newAuditBatcher(captured.commit, s.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.batcher.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, captured
}

// apiTLS is the API listeners' server configuration as cmd/trustfed builds
// it: optional client certificate, verified against the CA, and naming a
// trustfed identity.
func apiTLS(t *testing.T, pki *testutil.ClusterPKI) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(pki.CA.Cert)
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		Certificates:     []tls.Certificate{pki.NodeCert(t, "n1")},
		ClientAuth:       tls.VerifyClientCertIfGiven,
		ClientCAs:        pool,
		VerifyConnection: RequireTrustfedIdentity,
	}
}

// probe connects to addr, speaks TLS with cfg (nil: plaintext), writes
// request and reads the first bytes of the answer; it returns its local
// address and the first error (nil: the server answered over TLS).
func probe(t *testing.T, addr string, cfg *tls.Config, request string) (string, error) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer raw.Close()
	local := raw.LocalAddr().String()
	_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
	var conn net.Conn = raw
	if cfg != nil {
		tc := tls.Client(raw, cfg)
		if err := tc.Handshake(); err != nil {
			return local, err
		}
		conn = tc
	}
	if request != "" {
		if _, err := io.WriteString(conn, request); err != nil {
			return local, err
		}
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		return local, err
	}
	if cfg == nil {
		return local, fmt.Errorf("plaintext answered: %q", buf[:n])
	}
	return local, nil
}

type tlsCase struct {
	name, want string
	cfg        *tls.Config
}

// refusedCases are the connections an API listener refuses at TLS.
func refusedCases(t *testing.T, pki *testutil.ClusterPKI) []tlsCase {
	expired, notYet := pki.ExpiredNodeCert(t, "n9"), pki.NotYetValidNodeCert(t, "n9")
	other, anon := testutil.OtherCANodeCert(t, "n9"), pki.AnonymousCert(t)
	tls11 := pki.ProbeTLS(t, nil)
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	return []tlsCase{
		{"expired certificate", "expired", pki.ProbeTLS(t, &expired)},
		{"not yet valid certificate", "not yet valid", pki.ProbeTLS(t, &notYet)},
		{"certificate from another CA", "unknown authority", pki.ProbeTLS(t, &other)},
		{"right CA, no trustfed identity", "names no trustfed identity", pki.ProbeTLS(t, &anon)},
		{"TLS 1.1", "unsupported versions", tls11},
	}
}

func TestGRPCHandshakeRefusalsAreAudited(t *testing.T) {
	s, captured := auditingServer(t)
	pki := testutil.NewClusterPKI(t, t.TempDir())
	gs := grpc.NewServer(grpc.Creds(s.AuditedCredentials(credentials.NewTLS(apiTLS(t, pki)))))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	addr := ln.Addr().String()

	member, node := pki.MemberCert(t, "acme-bank", "gw1"), pki.NodeCert(t, "n2")
	for name, cfg := range map[string]*tls.Config{
		"no certificate (a token caller)": pki.ProbeTLS(t, nil),
		"member certificate":              pki.ProbeTLS(t, &member),
		"node certificate":                pki.ProbeTLS(t, &node),
	} {
		cfg.NextProtos = []string{"h2"}
		local, err := probe(t, addr, cfg, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		require.NoError(t, err, name)
		require.Empty(t, captured.from(local), name)
	}
	for _, tc := range refusedCases(t, pki) {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.NextProtos = []string{"h2"}
			local, err := probe(t, addr, tc.cfg, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
			require.Error(t, err)
			af := captured.waitFor(t, "tls:grpc", local, tc.want)
			require.Equal(t, "Unauthenticated", af.Code)
			require.Equal(t, "n1", af.NodeId)
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		local, err := probe(t, addr, nil, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
		require.Error(t, err)
		captured.waitFor(t, "tls:grpc", local, "does not look like a TLS handshake")
	})
}

func TestRESTHandshakeRefusalsAreAudited(t *testing.T) {
	s, captured := auditingServer(t)
	pki := testutil.NewClusterPKI(t, t.TempDir())
	var logged strings.Builder
	var logMu sync.Mutex
	hs := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		TLSConfig:         apiTLS(t, pki),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: s.HTTPErrorLog(slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logged.Write(p)
		}), nil))),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = hs.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = hs.Close() })
	addr := ln.Addr().String()
	const get = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

	member := pki.MemberCert(t, "acme-bank", "gw1")
	for name, cfg := range map[string]*tls.Config{"no certificate": pki.ProbeTLS(t, nil), "member certificate": pki.ProbeTLS(t, &member)} {
		local, err := probe(t, addr, cfg, get)
		require.NoError(t, err, name)
		require.Empty(t, captured.from(local), name)
	}
	for _, tc := range refusedCases(t, pki) {
		t.Run(tc.name, func(t *testing.T) {
			local, err := probe(t, addr, tc.cfg, get)
			require.Error(t, err)
			af := captured.waitFor(t, "tls:rest", local, tc.want)
			require.Equal(t, "Unauthenticated", af.Code)
		})
	}
	t.Run("plaintext HTTP", func(t *testing.T) {
		local, err := probe(t, addr, nil, get)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "ok", "the handler did not run")
		captured.waitFor(t, "tls:rest", local, "client sent an HTTP request to an HTTPS server")
	})
	t.Run("connect and close is not a refusal", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		local := c.LocalAddr().String()
		require.NoError(t, c.Close())
		_, err = probe(t, addr, pki.ProbeTLS(t, nil), get) // served after it
		require.NoError(t, err)
		require.Empty(t, captured.from(local))
	})
	// Other lines of the error log still reach the logger.
	hs.ErrorLog.Print("http: something else")
	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, logged.String(), "http: something else")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// A flood of refusals becomes a bounded number of audit entries; the count
// of those not audited one by one goes into a later entry.
func TestTransportRefusalAuditIsBounded(t *testing.T) {
	s, captured := auditingServer(t)
	for i := range 5 * refusalAuditBurst {
		s.AuditTransportRefusal(ListenerRaft, fmt.Sprintf("192.0.2.1:%d", 1000+i), errors.New("tls handshake: bad certificate"))
	}
	testutil.Eventually(t, 10*time.Second, "a later entry counts the refusals not audited", func() error {
		s.AuditTransportRefusal(ListenerRaft, "192.0.2.9:1", errors.New("tls handshake: bad certificate"))
		for _, af := range captured.from("192.0.2.9:1") {
			if strings.Contains(af.Reason, "earlier refusals not audited one by one") {
				return nil
			}
		}
		return errors.New("not yet")
	})
	n := 0
	for _, af := range captured.all() {
		require.Equal(t, "tls:raft", af.Method)
		if strings.HasPrefix(af.Peer, "192.0.2.1:") {
			n++
		}
	}
	require.LessOrEqual(t, n, refusalAuditBurst+10, "the flood was not audited one by one")
	require.GreaterOrEqual(t, n, refusalAuditBurst-1)

	// Long reasons are cut; a nil server or error does nothing.
	s, captured = auditingServer(t)
	s.AuditTransportRefusal(ListenerREST, "192.0.2.10:1", errors.New(strings.Repeat("é", 1000)))
	(*Server)(nil).AuditTransportRefusal(ListenerREST, "192.0.2.11:1", errors.New("x"))
	s.AuditTransportRefusal(ListenerREST, "192.0.2.12:1", nil)
	testutil.Eventually(t, 10*time.Second, "long reason audited", func() error {
		if got := captured.from("192.0.2.10:1"); len(got) == 1 {
			if len(got[0].Reason) > maxRefusalReason+len("…") {
				return testutil.Permanent(fmt.Errorf("reason of %d bytes", len(got[0].Reason)))
			}
			return nil
		}
		return errors.New("not yet")
	})
	require.Empty(t, captured.from("192.0.2.12:1"))
}
