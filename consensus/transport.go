package consensus

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
)

// newTransport creates raft's network transport over our stream layer:
// plain TCP when cfg.TLS is nil, mutual TLS otherwise.
func newTransport(cfg *Config, logger *slog.Logger) (*raft.NetworkTransport, error) {
	layer, err := newStreamLayer(cfg.BindAddr, cfg.AdvertiseAddr, cfg.TLS)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		Logger:  newHCLogger(logger.With("component", "raft-net"), "raft-net"),
		MaxPool: transportMaxPool,
		Timeout: transportTimeout,
	}), nil
}

// streamLayer is a raft.StreamLayer over TCP, optionally wrapped in mutual
// TLS. Unlike raft's own TCP transport it accepts a DNS name as advertise
// address, so a node can keep its raft address across IP changes.
//
// With TLS, handshakes on accepted connections happen on first read, inside
// raft's connection handler, so a peer with a bad certificate only costs a
// failed read there; dialing completes the handshake before returning.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	client    *tls.Config // nil = plain TCP
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(bind, advertise string, base *tls.Config) (*streamLayer, error) {
	var adv net.Addr
	if advertise != "" {
		a, err := parseAdvertise(advertise)
		if err != nil {
			return nil, fmt.Errorf("consensus config: AdvertiseAddr: %w", err)
		}
		adv = a
	}

	var (
		ln     net.Listener
		client *tls.Config
		err    error
	)
	if base == nil {
		ln, err = net.Listen("tcp", bind)
	} else {
		server := base.Clone()
		if server.ClientAuth == tls.NoClientCert {
			server.ClientAuth = tls.RequireAndVerifyClientCert
		}
		if server.ClientCAs == nil {
			server.ClientCAs = server.RootCAs
		}
		if server.MinVersion == 0 {
			server.MinVersion = tls.VersionTLS13
		}
		client = base.Clone()
		if client.MinVersion == 0 {
			client.MinVersion = tls.VersionTLS13
		}
		ln, err = tls.Listen("tcp", bind, server)
	}
	if err != nil {
		return nil, fmt.Errorf("raft listener on BindAddr %q: %w", bind, err)
	}

	if adv == nil {
		tcp, ok := ln.Addr().(*net.TCPAddr)
		if !ok || tcp.IP == nil || tcp.IP.IsUnspecified() {
			ln.Close()
			return nil, fmt.Errorf("consensus config: bound address %s is not advertisable: set AdvertiseAddr", ln.Addr())
		}
		adv = tcp
	}
	return &streamLayer{ln: ln, advertise: adv, client: client}, nil
}

func (s *streamLayer) Accept() (net.Conn, error) { return s.ln.Accept() }
func (s *streamLayer) Close() error              { return s.ln.Close() }
func (s *streamLayer) Addr() net.Addr            { return s.advertise }

// Dial connects to a peer within timeout. With TLS the server name is the
// host of the peer's raft address, so certificates need a matching IP or
// DNS SAN.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	// Connecting is bounded separately from raft's I/O timeout: a peer that
	// vanished must not hold a replication goroutine (and so Close) for the
	// whole I/O timeout.
	d := &net.Dialer{Timeout: min(timeout, dialTimeout)}
	if s.client == nil {
		conn, err := d.Dial("tcp", string(address))
		if err != nil {
			return nil, fmt.Errorf("raft dial %s: %w", address, err)
		}
		return conn, nil
	}
	conn, err := tls.DialWithDialer(d, "tcp", string(address), s.client)
	if err != nil {
		return nil, fmt.Errorf("raft tls dial %s: %w", address, err)
	}
	return conn, nil
}

// dialTimeout bounds establishing a raft connection (TCP and TLS handshake).
const dialTimeout = 2 * time.Second

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
