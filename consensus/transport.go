package consensus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"golang.org/x/time/rate"
)

// newTransport creates raft's network transport over our stream layer:
// plain TCP when cfg.TLS is nil, mutual TLS otherwise.
func newTransport(cfg *Config, logger *slog.Logger) (*gatedTransport, error) {
	layer, err := newStreamLayer(cfg, logger.With("logger", "raft-tls"))
	if err != nil {
		return nil, err
	}
	return &gatedTransport{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		Logger:  newHCLogger(logger, "raft-net"),
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
	})}, nil
}

// gatedTransport is raft's network transport with its heartbeat fast path
// behind a gate. Raft handles a heartbeat on the transport's connection
// goroutine, not on its own (processHeartbeat), so Raft's Shutdown does not
// wait for one in flight: a heartbeat with a newer term that arrived just
// before the shutdown could write the term after Node.Close had closed the
// store, and hashicorp/raft panics when it cannot save the term ("failed
// to save current term: database not open", seen in a system test).
// closeHeartbeats waits for the heartbeats being handled and leaves the
// later ones unanswered (the transport answers them ErrTransportShutdown
// once it is closed).
type gatedTransport struct {
	*raft.NetworkTransport
	heartbeats heartbeatGate
}

// SetHeartbeatHandler implements raft.Transport: cb runs behind the gate.
func (t *gatedTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.NetworkTransport.SetHeartbeatHandler(t.heartbeats.wrap(cb))
}

// closeHeartbeats returns once no heartbeat is being handled; none is
// handled after it.
func (t *gatedTransport) closeHeartbeats() { t.heartbeats.close() }

// heartbeatGate runs handlers until it is closed; close waits for those
// running.
type heartbeatGate struct {
	mu     sync.RWMutex
	closed bool
}

func (g *heartbeatGate) wrap(cb func(rpc raft.RPC)) func(rpc raft.RPC) {
	if cb == nil {
		return nil
	}
	return func(rpc raft.RPC) {
		g.mu.RLock()
		defer g.mu.RUnlock()
		if !g.closed {
			cb(rpc)
		}
	}
}

func (g *heartbeatGate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

const (
	// dialTimeout bounds establishing a raft connection (TCP and TLS handshake).
	dialTimeout = 2 * time.Second
	// defaultHandshakeTimeout bounds the TLS handshake of an accepted connection.
	defaultHandshakeTimeout = 5 * time.Second
	// maxPendingHandshakes bounds the accepted connections whose handshake is
	// in progress; beyond it new connections are refused at once.
	maxPendingHandshakes = 256
)

// streamLayer is a raft.StreamLayer over TCP, optionally wrapped in mutual
// TLS. Unlike raft's own TCP transport it accepts a DNS name as advertise
// address, so a node can keep its raft address across IP changes.
//
// With TLS, an accepted connection reaches raft only after its handshake
// completed — the peer's chain verified against the cluster CA and its leaf
// accepted by Config.VerifyPeer — so raft never reads a byte from a peer that
// was not authenticated. Handshakes run concurrently (at most
// maxPendingHandshakes), each bounded by a deadline, so a slow or silent
// client holds neither raft's accept loop nor a raft handler. Every refused
// connection is reported to Config.OnRejectedConn. Dialing completes (and
// verifies) the handshake before returning.
type streamLayer struct {
	ln        net.Listener // raw TCP, or the handshaking TLS listener
	advertise net.Addr
	client    *tls.Config // nil = plain TCP
	reject    func(remoteAddr string, err error)
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(cfg *Config, logger *slog.Logger) (*streamLayer, error) {
	var adv net.Addr
	if cfg.AdvertiseAddr != "" {
		a, err := parseAdvertise(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("consensus config: AdvertiseAddr: %w", err)
		}
		adv = a
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("raft listener on BindAddr %q: %w", cfg.BindAddr, err)
	}
	if adv == nil {
		tcp, ok := ln.Addr().(*net.TCPAddr)
		if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("consensus config: bound address %s is not advertisable: set AdvertiseAddr", ln.Addr())
		}
		adv = tcp
	}
	s := &streamLayer{ln: ln, advertise: adv}
	if cfg.TLS == nil {
		return s, nil
	}
	s.reject = rejectReporter(cfg.OnRejectedConn, logger)
	server, client := transportTLS(cfg.TLS, cfg.VerifyPeer)
	s.client = client
	timeout := cfg.handshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	s.ln = newHandshakeListener(ln, server, timeout, maxPendingHandshakes, s.reject)
	return s, nil
}

// transportTLS derives the server and client configurations from base:
// client certificates always required and verified (ClientCAs defaulting to
// RootCAs), TLS 1.3 unless base asks for at least 1.2 (validate refuses
// less), and verify applied to the peer's leaf on both sides.
func transportTLS(base *tls.Config, verify func(*x509.Certificate) error) (server, client *tls.Config) {
	server = base.Clone()
	server.ClientAuth = tls.RequireAndVerifyClientCert
	if server.ClientCAs == nil {
		server.ClientCAs = server.RootCAs
	}
	client = base.Clone()
	for _, c := range []*tls.Config{server, client} {
		if c.MinVersion == 0 {
			c.MinVersion = tls.VersionTLS13
		}
		c.VerifyConnection = verifyConnection(c.VerifyConnection, verify)
	}
	return server, client
}

// verifyConnection chains VerifyPeer after a configuration's own
// VerifyConnection. tls calls it after the chain was verified.
func verifyConnection(prev func(tls.ConnectionState) error, verify func(*x509.Certificate) error) func(tls.ConnectionState) error {
	if verify == nil {
		return prev
	}
	return func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return errors.New("raft peer presented no certificate")
		}
		if err := verify(cs.PeerCertificates[0]); err != nil {
			return fmt.Errorf("raft peer certificate refused: %w", err)
		}
		return nil
	}
}

// rejectReporter returns the function every refused connection goes
// through: hook (if any) and a debug log, plus a warning now and then.
func rejectReporter(hook func(string, error), logger *slog.Logger) func(string, error) {
	var warn rate.Sometimes
	warn.First, warn.Interval = 3, 10*time.Second
	return func(addr string, err error) {
		logger.Debug("raft connection refused", "remote", addr, "error", err)
		warn.Do(func() {
			logger.Warn("raft connection refused (warned at most every 10s, every refusal at debug level)", "remote", addr, "error", err)
		})
		if hook != nil {
			hook(addr, err)
		}
	}
}

func (s *streamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *streamLayer) Close() error              { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr            { return s.advertise }

// Dial connects to a peer within timeout. With TLS the server name is the
// host of the peer's raft address, so certificates need a matching IP or
// DNS SAN; a peer whose certificate does not verify, or that VerifyPeer
// refuses, is reported like a refused incoming connection.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	// Connecting is bounded separately from raft's I/O timeout: a peer that
	// vanished must not hold a replication goroutine (and so Close) for the
	// whole I/O timeout.
	deadline := time.Now().Add(min(timeout, dialTimeout))
	conn, err := (&net.Dialer{Deadline: deadline}).Dial("tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	if s.client == nil {
		return conn, nil
	}
	cfg := s.client
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(string(address))
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("raft dial %s: %w", address, err)
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		err = fmt.Errorf("raft tls dial %s: %w", address, err)
		if refusedByUs(err) {
			s.reject(string(address), err)
		}
		return nil, err
	}
	return tc, nil
}

// refusedByUs tells a handshake this side refused (the peer's certificate,
// identity or protocol) from one that broke off: the peer closed or reset
// the connection, timed out, or refused us (it reports that itself).
func refusedByUs(err error) bool {
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.As(err, &ne) && ne.Timeout():
		return false
	case errors.As(err, &op) && op.Op == "remote error":
		return false
	}
	return true
}

// handshakeListener accepts TCP connections and hands raft only those whose
// TLS handshake completed. Handshakes run in their own goroutines, at most
// maxPending at a time, each within timeout; Close cancels those in flight
// and waits for their goroutines.
type handshakeListener struct {
	raw     net.Listener
	config  *tls.Config
	timeout time.Duration
	reject  func(addr string, err error)

	ready  chan net.Conn
	slots  chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
	wg     sync.WaitGroup
}

func newHandshakeListener(raw net.Listener, config *tls.Config, timeout time.Duration, maxPending int, reject func(string, error)) *handshakeListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &handshakeListener{
		raw: raw, config: config, timeout: timeout, reject: reject,
		ready: make(chan net.Conn), slots: make(chan struct{}, maxPending),
		ctx: ctx, cancel: cancel,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

func (l *handshakeListener) acceptLoop() {
	defer l.wg.Done()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.raw.Accept()
		if err != nil {
			if l.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			t := time.NewTimer(backoff)
			select {
			case <-l.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		select {
		case l.slots <- struct{}{}:
		default:
			c.Close()
			l.reject(c.RemoteAddr().String(), fmt.Errorf("tls handshake not attempted: too many handshakes in progress (%d)", cap(l.slots)))
			continue
		}
		l.wg.Add(1)
		go l.handshake(c)
	}
}

func (l *handshakeListener) handshake(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.slots }()
	ctx, cancel := context.WithTimeout(l.ctx, l.timeout)
	defer cancel()
	tc := tls.Server(c, l.config)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		switch {
		case l.ctx.Err() != nil:
			// Closing: not the peer's fault.
		case errors.Is(err, io.EOF):
			// Connected and closed without a word: nothing was presented,
			// nothing refused (port probes, health checks).
		case errors.Is(err, context.DeadlineExceeded):
			l.reject(c.RemoteAddr().String(), fmt.Errorf("tls handshake not completed within %s", l.timeout))
		default:
			l.reject(c.RemoteAddr().String(), fmt.Errorf("tls handshake: %w", err))
		}
		return
	}
	select {
	case l.ready <- tc:
	case <-l.ctx.Done():
		tc.Close()
	}
}

// Accept returns the next connection whose handshake completed.
func (l *handshakeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.ctx.Done():
		return nil, fmt.Errorf("raft listener: %w", net.ErrClosed)
	}
}

// Close stops accepting, cancels handshakes in flight and waits for them.
func (l *handshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.raw.Close()
		l.wg.Wait()
	})
	return err
}

func (l *handshakeListener) Addr() net.Addr { return l.raw.Addr() }

// advertiseAddr is a host:port raft address that may name a DNS host.
type advertiseAddr string

func (a advertiseAddr) Network() string { return "tcp" }
func (a advertiseAddr) String() string  { return string(a) }

func parseAdvertise(s string) (net.Addr, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return nil, fmt.Errorf("%q: port must be 1-65535", s)
	}
	if host == "" {
		return nil, fmt.Errorf("%q: host is required", s)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return nil, fmt.Errorf("%q: unspecified address is not advertisable", s)
	}
	return advertiseAddr(net.JoinHostPort(host, port)), nil
}
