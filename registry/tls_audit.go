package registry

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// Listener names of transport refusals: the audit entry's method is
// "tls:<listener>".
const (
	ListenerRaft = "raft"
	ListenerGRPC = "grpc"
	ListenerREST = "rest"
)

const (
	// refusalAuditRate and refusalAuditBurst bound the transport refusals
	// audited per second on a node (all listeners together): each one is a
	// Raft entry, and a flood of bad handshakes must not become a flood of
	// writes. Refusals over the bound are counted, and the count goes into
	// the next entry that is written.
	refusalAuditRate  = 20
	refusalAuditBurst = 200
	// maxRefusalReason bounds the reason kept in an entry (bytes).
	maxRefusalReason = 512
	// grpcHandshakeTimeout bounds a gRPC connection's TLS handshake (gRPC's
	// own bound is 120 s).
	grpcHandshakeTimeout = 10 * time.Second
)

// refusals bounds the audit entries of transport refusals.
type refusals struct {
	lim        *rate.Limiter
	suppressed atomic.Uint64
	warn       rate.Sometimes
}

func newRefusals() *refusals {
	r := &refusals{lim: rate.NewLimiter(refusalAuditRate, refusalAuditBurst)}
	r.warn.First, r.warn.Interval = 1, 10*time.Second
	return r
}

// AuditTransportRefusal records, as an AUTH_FAILURE audit entry with method
// "tls:<listener>" and code Unauthenticated, a connection refused at the
// TLS layer of one of this node's listeners (ListenerRaft, ListenerGRPC,
// ListenerREST) before any handler or Raft RPC ran. It never blocks and
// holds no memory per refusal beyond the audit queue's bound: at most
// refusalAuditRate entries a second (burst refusalAuditBurst) are written;
// the others are counted, logged now and then, and their number noted in
// the next entry. Safe to call on a nil Server (it does nothing).
func (s *Server) AuditTransportRefusal(listener, remoteAddr string, err error) {
	if s == nil || err == nil {
		return
	}
	s.metrics.tlsRefusal(listener)
	reason := truncateReason(err.Error())
	rf := s.limiter.refusals
	if !rf.lim.Allow() {
		n := rf.suppressed.Add(1)
		rf.warn.Do(func() {
			s.log.Warn("transport refusals over the audit bound: counted, not audited one by one",
				"listener", listener, "remote", remoteAddr, "error", reason, "not_audited", n)
		})
		return
	}
	if n := rf.suppressed.Swap(0); n > 0 {
		reason += fmt.Sprintf(" (and %d earlier refusals not audited one by one: more than %d a second)", n, refusalAuditRate)
	}
	s.log.Info("connection refused at TLS", "listener", listener, "remote", remoteAddr, "error", reason)
	if s.audit == nil {
		return
	}
	af := &trustfedv1.AuditAuthFailure{
		Method: "tls:" + listener,
		Code:   codes.Unauthenticated.String(),
		Reason: reason,
		Peer:   remoteAddr,
		NodeId: s.cfg.NodeID,
	}
	s.batcher.Record(&commandv1.AuditEvent{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: af}})
}

func truncateReason(s string) string {
	if len(s) <= maxRefusalReason {
		return s
	}
	s = s[:maxRefusalReason]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// handshakeRefused tells a refused handshake from a connection that closed
// before saying anything (port probes, health checks): only the first is
// audited.
func handshakeRefused(err error) bool {
	return err != nil && !errors.Is(err, io.EOF)
}

// AuditedCredentials wraps a gRPC server's transport credentials: every
// failed server handshake is audited (AuditTransportRefusal, listener
// "grpc"), and a handshake must complete within grpcHandshakeTimeout.
func (s *Server) AuditedCredentials(c credentials.TransportCredentials) credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: c, server: s}
}

type auditedCreds struct {
	credentials.TransportCredentials
	server *Server
}

func (a *auditedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// gRPC sets its own (longer) deadline before and clears it after.
	_ = conn.SetDeadline(time.Now().Add(grpcHandshakeTimeout))
	out, info, err := a.TransportCredentials.ServerHandshake(conn)
	if handshakeRefused(err) {
		a.server.AuditTransportRefusal(ListenerGRPC, conn.RemoteAddr().String(), err)
	}
	return out, info, err
}

func (a *auditedCreds) Clone() credentials.TransportCredentials {
	return &auditedCreds{TransportCredentials: a.TransportCredentials.Clone(), server: a.server}
}

// httpHandshakeError is how net/http reports a failed TLS handshake on its
// ErrorLog: "http: TLS handshake error from <addr>: <reason>".
const httpHandshakeError = "http: TLS handshake error from "

// HTTPErrorLog returns the ErrorLog for the REST server: TLS handshake
// failures are audited (AuditTransportRefusal, listener "rest"), except a
// connection closed before the handshake began (EOF); every line is also
// logged to logger at warning level.
func (s *Server) HTTPErrorLog(logger *slog.Logger) *log.Logger {
	return log.New(&httpErrorWriter{server: s, logger: logger}, "", 0)
}

type httpErrorWriter struct {
	server *Server
	logger *slog.Logger
}

func (w *httpErrorWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(bytes.TrimRight(p, "\n")))
	if rest, ok := strings.CutPrefix(line, httpHandshakeError); ok {
		// The address is host:port (an IPv6 host is bracketed), then ": ".
		if addr, reason, ok := strings.Cut(rest, ": "); ok {
			if reason != "EOF" {
				w.server.AuditTransportRefusal(ListenerREST, addr, errors.New(reason))
			}
			return len(p), nil
		}
	}
	w.logger.Warn(line)
	return len(p), nil
}

// RequireTrustfedIdentity is a tls.Config VerifyConnection for the API
// listeners (gRPC and REST), where a client certificate is optional: a
// certificate, when presented, verified against the cluster CA, must also
// name a trustfed identity — a registry server (spiffe://trustfed/node/<id>)
// or a member node (spiffe://trustfed/org/<org>/member/<node>). Anything
// else the CA signed is refused at the handshake.
func RequireTrustfedIdentity(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	cert := cs.PeerCertificates[0]
	if _, ok := attestation.NodeIDFromCert(cert); ok {
		return nil
	}
	if _, _, ok := attestation.MemberFromCert(cert); ok {
		return nil
	}
	return errors.New("client certificate names no trustfed identity (neither spiffe://trustfed/node/<id> nor spiffe://trustfed/org/<org>/member/<node>)")
}
