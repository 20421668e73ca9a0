package consensus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

// certOpts shapes a test certificate.
type certOpts struct {
	uri                 string // URI SAN, "" = none
	notBefore, notAfter time.Time
	clientOnly          bool // client auth EKU only (a member node's certificate)
}

// issue issues a certificate from ca and returns it as a tls.Certificate.
func (ca *testCA) issue(t *testing.T, o certOpts) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "probe"},
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if o.clientOnly {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	if o.uri != "" {
		u, err := url.Parse(o.uri)
		require.NoError(t, err)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// serverIdentity is the test's VerifyPeer: a raft peer must carry a URI
// SAN spiffe://test/node/<id>.
func serverIdentity(cert *x509.Certificate) error {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" && u.Host == "test" && strings.HasPrefix(u.Path, "/node/") {
			return nil
		}
	}
	return errors.New("no server node identity")
}

// rejections collects what OnRejectedConn reports.
type rejections struct {
	mu  sync.Mutex
	got []string // "addr: error"
}

func (r *rejections) hook(addr string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, addr+": "+err.Error())
}

// waitFor waits until a rejection from addr containing want was reported.
func (r *rejections) waitFor(t *testing.T, addr, want string) {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, g := range r.got {
			if strings.HasPrefix(g, addr+": ") && strings.Contains(g, want) {
				return true
			}
		}
		return false
	}, waitTimeout, 5*time.Millisecond, "no rejection of %s containing %q; got %q", addr, want, r.snapshot())
}

func (r *rejections) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

func (r *rejections) from(addr string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, g := range r.got {
		if strings.HasPrefix(g, addr+": ") {
			out = append(out, g)
		}
	}
	return out
}

// probeLayer is the client side of a raft transport that dials with a
// chosen TLS configuration (nil = plaintext) and remembers the local
// address of its last connection.
type probeLayer struct {
	net.Listener
	tls *tls.Config

	mu    sync.Mutex
	local string
}

func (p *probeLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.local = c.LocalAddr().String()
	p.mu.Unlock()
	if p.tls == nil {
		return c, nil
	}
	tc := tls.Client(c, p.tls)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

func (p *probeLayer) Addr() net.Addr { return p.Listener.Addr() }

func (p *probeLayer) localAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.local
}

// requestVote sends one RequestVote RPC (a stale term: harmless) to target
// through raft's own network transport over a probe layer, and returns the
// local address used and the RPC's error.
func requestVote(t *testing.T, target string, cfg *tls.Config) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	layer := &probeLayer{Listener: ln, tls: cfg}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 1, Timeout: 3 * time.Second,
		Logger: hclog.NewNullLogger(),
	})
	defer trans.Close()
	var resp raft.RequestVoteResponse
	err = trans.RequestVote("n1", raft.ServerAddress(target), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("probe"), Addr: []byte(ln.Addr().String())},
		Term:      0,
	}, &resp)
	if err == nil && resp.Term == 0 {
		err = errors.New("raft answered with term 0")
	}
	return layer.localAddr(), err
}

func tls11(c *tls.Config) *tls.Config {
	c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	return c
}

// Every connection the raft port refuses is refused at the TLS layer —
// before raft reads an RPC — and reported; a good peer's RPC goes through.
func TestTransportRefusesBadPeersBeforeRaft(t *testing.T) {
	good := newTestCA(t, "federation-ca")
	other := newTestCA(t, "other-ca")
	var rej rejections
	c := newCluster(t)
	c.tls["n1"] = good.nodeTLS(t, "n1")
	c.tls["n1"].Certificates = []tls.Certificate{good.issue(t, certOpts{uri: "spiffe://test/node/n1"})}
	c.tweak = func(cfg *Config) {
		cfg.VerifyPeer = serverIdentity
		cfg.OnRejectedConn = rej.hook
		cfg.handshakeTimeout = 500 * time.Millisecond
	}
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	target := n1.RaftAddr()

	// The client presents its certificate whatever CAs the server names
	// (Go's client would otherwise keep a certificate of another CA to itself).
	client := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: good.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &certs[0], nil
			}}
	}

	t.Run("a peer with a server node identity reaches raft", func(t *testing.T) {
		local, err := requestVote(t, target, client(good.issue(t, certOpts{uri: "spiffe://test/node/n9"})))
		require.NoError(t, err)
		require.Empty(t, rej.from(local))
	})

	// A silent client holds one handshake slot until its deadline; it
	// holds neither the accept loop nor raft.
	silent, err := net.Dial("tcp", target)
	require.NoError(t, err)
	defer silent.Close()

	now := time.Now()
	for _, tc := range []struct {
		name, want string
		cfg        *tls.Config
	}{
		{"plaintext", "does not look like a TLS handshake", nil},
		{"no certificate", "certificate", client()},
		{"expired certificate", "certificate", client(good.issue(t, certOpts{uri: "spiffe://test/node/x", notBefore: now.Add(-2 * time.Hour), notAfter: now.Add(-time.Hour)}))},
		{"not yet valid certificate", "certificate", client(good.issue(t, certOpts{uri: "spiffe://test/node/x", notBefore: now.Add(time.Hour), notAfter: now.Add(2 * time.Hour)}))},
		{"certificate from another CA", "unknown authority", client(other.issue(t, certOpts{uri: "spiffe://test/node/x"}))},
		{"right CA, member identity", "no server node identity", client(good.issue(t, certOpts{uri: "spiffe://test/org/acme/member/m1", clientOnly: true}))},
		{"right CA, no identity", "no server node identity", client(good.issue(t, certOpts{}))},
		{"TLS 1.1", "unsupported versions", tls11(client(good.issue(t, certOpts{uri: "spiffe://test/node/n9"})))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			local, err := requestVote(t, target, tc.cfg)
			require.Error(t, err, "raft answered an RPC over a refused connection")
			require.NotEmpty(t, local)
			rej.waitFor(t, local, tc.want)
		})
	}

	t.Run("the silent client is cut off at the handshake deadline", func(t *testing.T) {
		rej.waitFor(t, silent.LocalAddr().String(), "not completed within 500ms")
		_ = silent.SetReadDeadline(time.Now().Add(waitTimeout))
		_, err := silent.Read(make([]byte, 1))
		require.ErrorIs(t, err, io.EOF, "the server closed the connection")
	})

	t.Run("a client that connects and closes is not reported", func(t *testing.T) {
		c, err := net.Dial("tcp", target)
		require.NoError(t, err)
		local := c.LocalAddr().String()
		require.NoError(t, c.Close())
		// A good RPC after it proves the server has moved on.
		_, err = requestVote(t, target, client(good.issue(t, certOpts{uri: "spiffe://test/node/n9"})))
		require.NoError(t, err)
		require.Empty(t, rej.from(local))
	})

	// The node itself is unharmed.
	apply(t, "set still ok", n1)
}

// A node refuses, when it dials, a peer whose certificate comes from the
// right CA but names no server node: it never replicates to it, and
// reports the refusal.
func TestTransportVerifiesPeerOnDial(t *testing.T) {
	ca := newTestCA(t, "federation-ca")
	var rej rejections
	c := newCluster(t)
	c.tls["n1"] = ca.nodeTLS(t, "n1")
	c.tls["n1"].Certificates = []tls.Certificate{ca.issue(t, certOpts{uri: "spiffe://test/node/n1"})}
	c.tls["member"] = ca.nodeTLS(t, "member")
	c.tls["member"].Certificates = []tls.Certificate{ca.issue(t, certOpts{uri: "spiffe://test/org/acme/member/member"})}
	c.tweak = func(cfg *Config) {
		if cfg.NodeID == "n1" {
			cfg.VerifyPeer = serverIdentity
			cfg.OnRejectedConn = rej.hook
		}
	}
	n1 := c.start("n1", true)
	waitLeader(t, n1)
	member := c.start("member", false)

	_, err := n1.AddNonvoter(ctxT(t), member.id, member.RaftAddr(), member.api) // n1 then replicates to it
	require.NoError(t, err)
	rej.waitFor(t, member.RaftAddr(), "no server node identity")
	require.Never(t, func() bool { return member.AppliedIndex() > 0 }, time.Second, 20*time.Millisecond, "the member node received raft entries")
}

func TestTransportTLSFloor(t *testing.T) {
	ca := newTestCA(t, "federation-ca")
	c := newCluster(t)
	cfg := c.config("n1", "127.0.0.1:0", true, newKV())
	cfg.TLS = ca.nodeTLS(t, "n1")
	cfg.TLS.MinVersion = tls.VersionTLS11
	_, err := New(cfg)
	require.ErrorContains(t, err, "TLS.MinVersion TLS 1.1 is below the floor, TLS 1.2")

	cfg.TLS = nil
	cfg.VerifyPeer = serverIdentity
	_, err = New(cfg)
	require.ErrorContains(t, err, "VerifyPeer and OnRejectedConn need TLS")
}

// Beyond the bound on handshakes in progress, connections are refused at
// once (and reported) instead of queueing behind slow ones.
func TestHandshakeListenerBoundsPendingHandshakes(t *testing.T) {
	ca := newTestCA(t, "federation-ca")
	server, _ := transportTLS(ca.nodeTLS(t, "n1"), nil)
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var rej rejections
	l := newHandshakeListener(raw, server, waitTimeout, 1, rej.hook)
	defer l.Close()

	slow, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer slow.Close()
	// The slow connection holds the only slot once the loop accepted it;
	// until then a second connection may take it, so retry with fresh ones.
	var refused net.Conn
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", raw.Addr().String())
		require.NoError(t, err)
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
			refused = c
			return true
		}
		c.Close()
		return false
	}, waitTimeout, 10*time.Millisecond)
	defer refused.Close()
	rej.waitFor(t, refused.LocalAddr().String(), "too many handshakes in progress (1)")
	require.Empty(t, rej.from(slow.LocalAddr().String()), "the slow client is still within its deadline")

	// Close cancels the handshake in flight and returns.
	require.NoError(t, l.Close())
	_, err = l.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestHeartbeatGateWaitsForTheHeartbeatInFlight: Node.Close closes the gate
// before the store, so a heartbeat being handled (which may save a newer
// term) finishes first, and none is handled after it.
func TestHeartbeatGateWaitsForTheHeartbeatInFlight(t *testing.T) {
	var g heartbeatGate
	started, release := make(chan struct{}), make(chan struct{})
	var handled atomic.Int32
	h := g.wrap(func(raft.RPC) {
		if handled.Add(1) == 1 {
			close(started)
			<-release
		}
	})
	go h(raft.RPC{})
	<-started
	closed := make(chan struct{})
	go func() { g.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a heartbeat was being handled")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return after the heartbeat finished")
	}
	h(raft.RPC{})
	if n := handled.Load(); n != 1 {
		t.Fatalf("%d heartbeats handled, want 1: none after close", n)
	}
	if g.wrap(nil) != nil {
		t.Fatal("a nil handler must stay nil (raft's default path)")
	}
}
