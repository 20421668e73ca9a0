package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Member nodes authenticate with short-lived client certificates for their
// own ed25519 key. An organisation enrols a node's public key
// (SignMemberEnrolment, AccessService.EnrolMemberNode); the node then
// proves it holds the key (RequestMemberCertificate: GetMemberChallenge,
// sign, IssueMemberCertificate) and presents the certificate it gets over
// mutual TLS. MemberCredentials keeps one current, renewing it in the
// background.

// Access returns the AccessService client: tokens, member nodes and their
// certificates.
func (c *Client) Access() trustfedv1.AccessServiceClient {
	return trustfedv1.NewAccessServiceClient(c.conn)
}

// SignMemberEnrolment is the organisation's signature (orgKey, its
// registered key) over an enrolment: ed25519 over
// "trustfed/member-node/v1\x00" + the enrolment's deterministic
// serialization, which is what the registry verifies.
func SignMemberEnrolment(orgKey ed25519.PrivateKey, e *trustfedv1.MemberNodeEnrolment) ([]byte, error) {
	if len(orgKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign member enrolment: organisation key of %d bytes", len(orgKey))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("sign member enrolment: %w", err)
	}
	return attestation.Sign(orgKey, attestation.PurposeMemberNode, b), nil
}

// NewMemberEnrolment returns a signed request enrolling node of org with
// the public key nodeKey, signed now with the organisation key orgKey.
func NewMemberEnrolment(orgKey ed25519.PrivateKey, org, node string, nodeKey ed25519.PublicKey, now time.Time) (*trustfedv1.EnrolMemberNodeRequest, error) {
	e := &trustfedv1.MemberNodeEnrolment{OrganizationId: org, NodeId: node, PublicKey: nodeKey, SignTime: timestamppb.New(now)}
	sig, err := SignMemberEnrolment(orgKey, e)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.EnrolMemberNodeRequest{Enrolment: e, Signature: sig}, nil
}

// RequestMemberCertificate proves to the registry c is connected to that
// the caller holds the enrolled key of org's member node and returns a
// client certificate for it, valid for validity (0 = the registry's
// default, 24 h): it asks for a challenge, signs it with key and exchanges
// it for a certificate. Both calls need no credentials. The private key
// never leaves this process. The returned tls.Certificate is ready for
// tls.Config.Certificates or GetClientCertificate.
func RequestMemberCertificate(ctx context.Context, c *Client, org, node string, key ed25519.PrivateKey, validity time.Duration) (tls.Certificate, *x509.Certificate, error) {
	fail := func(err error) (tls.Certificate, *x509.Certificate, error) {
		return tls.Certificate{}, nil, fmt.Errorf("member certificate for %s/%s: %w", org, node, err)
	}
	if len(key) != ed25519.PrivateKeySize {
		return fail(fmt.Errorf("node key of %d bytes", len(key)))
	}
	access := c.Access()
	ch, err := access.GetMemberChallenge(ctx, &trustfedv1.GetMemberChallengeRequest{OrganizationId: org, NodeId: node})
	if err != nil {
		return fail(fmt.Errorf("get challenge: %w", err))
	}
	// Sign only a challenge for this node: the signature is domain
	// separated, but a node has no reason to sign anything else.
	var parsed trustfedv1.MemberChallenge
	if err := proto.Unmarshal(ch.GetChallenge(), &parsed); err != nil {
		return fail(fmt.Errorf("the registry's challenge does not decode: %w", err))
	}
	if parsed.OrganizationId != org || parsed.NodeId != node {
		return fail(fmt.Errorf("the registry's challenge is for %s/%s", parsed.OrganizationId, parsed.NodeId))
	}
	req := &trustfedv1.IssueMemberCertificateRequest{
		Challenge:         ch.GetChallenge(),
		RegistrySignature: ch.GetRegistrySignature(),
		NodeSignature:     attestation.Sign(key, attestation.PurposeMemberChallenge, ch.GetChallenge()),
	}
	if validity > 0 {
		req.Validity = durationpb.New(validity)
	}
	resp, err := access.IssueMemberCertificate(ctx, req)
	if err != nil {
		return fail(fmt.Errorf("issue certificate: %w", err))
	}
	leaf, err := attestation.ParseCertificatePEM([]byte(resp.GetCertificatePem()))
	if err != nil {
		return fail(err)
	}
	pub, _ := leaf.PublicKey.(ed25519.PublicKey)
	if !bytes.Equal(pub, key.Public().(ed25519.PublicKey)) {
		return fail(errors.New("the certificate is not for this node's key"))
	}
	if o, n, ok := attestation.MemberFromCert(leaf); !ok || o != org || n != node {
		return fail(fmt.Errorf("the certificate names %q/%q", o, n))
	}
	return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, leaf, nil
}

// MemberCredentials holds a member node's current client certificate and
// renews it in the background at 2/3 of its lifetime (retrying with
// backoff while that fails). Give its GetClientCertificate and DialOption
// to the member's connection (Configure does both): every TLS handshake
// then presents the current certificate, and connections opened with an
// older one are closed once a renewal succeeds, so gRPC reconnects with the
// new one (calls in flight on them fail with Unavailable and may be
// retried). Close stops the renewals.
type MemberCredentials struct {
	org, node string
	issue     func(context.Context) (tls.Certificate, *x509.Certificate, error)
	logger    *slog.Logger
	now       func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	issued  time.Time // when cert was obtained
	lastErr error
	conns   map[*trackedConn]struct{}

	renewNow chan struct{}
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewMemberCredentials obtains a first certificate for org's member node
// with key from the registry behind c (RequestMemberCertificate, validity
// as there) and starts renewing it until Close or ctx ends. c must be able
// to call the registry without this certificate: a connection without a
// client certificate, or one that presents another that is still valid.
func NewMemberCredentials(ctx context.Context, c *Client, org, node string, key ed25519.PrivateKey, validity time.Duration) (*MemberCredentials, error) {
	return newMemberCredentials(ctx, org, node, func(ctx context.Context) (tls.Certificate, *x509.Certificate, error) {
		return RequestMemberCertificate(ctx, c, org, node, key, validity)
	}, time.Now)
}

func newMemberCredentials(ctx context.Context, org, node string, issue func(context.Context) (tls.Certificate, *x509.Certificate, error), now func() time.Time) (*MemberCredentials, error) {
	m := &MemberCredentials{
		org: org, node: node, issue: issue, now: now,
		logger:   slog.Default().With("component", "member-credentials", "organization_id", org, "node_id", node),
		conns:    map[*trackedConn]struct{}{},
		renewNow: make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if err := m.renew(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	go m.run(rctx)
	return m, nil
}

// Configure returns cfg set up to present these credentials: its
// GetClientCertificate and the dial option that tracks connections.
func (m *MemberCredentials) Configure(cfg Config) Config {
	cfg.GetClientCertificate = m.GetClientCertificate
	cfg.DialOptions = append(append([]grpc.DialOption(nil), cfg.DialOptions...), m.DialOption())
	return cfg
}

// GetClientCertificate returns the current certificate (a
// tls.Config.GetClientCertificate callback).
func (m *MemberCredentials) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cert, nil
}

// Certificate returns the current certificate.
func (m *MemberCredentials) Certificate() *x509.Certificate {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cert.Leaf
}

// Err returns the error of the last renewal attempt (nil once one succeeded).
func (m *MemberCredentials) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}

// Renew asks for a renewal now (asynchronously).
func (m *MemberCredentials) Renew() {
	select {
	case m.renewNow <- struct{}{}:
	default:
	}
}

// Close stops the renewals and waits for the renewing goroutine to end.
// The current certificate stays usable until it expires.
func (m *MemberCredentials) Close() error {
	m.cancel()
	<-m.done
	return nil
}

// Backoff of failed renewals.
const (
	memberRenewMinBackoff = time.Second
	memberRenewMaxBackoff = time.Minute
)

func (m *MemberCredentials) run(ctx context.Context) {
	defer close(m.done)
	backoff := memberRenewMinBackoff
	for {
		wait := m.renewAt().Sub(m.now())
		if m.Err() != nil {
			wait = backoff
		}
		timer := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-m.renewNow:
			timer.Stop()
		case <-timer.C:
		}
		if err := m.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			m.logger.Warn("member certificate renewal failed; retrying", "error", err, "retry_in", backoff, "expires", m.Certificate().NotAfter)
			backoff = min(2*backoff, memberRenewMaxBackoff)
			continue
		}
		backoff = memberRenewMinBackoff
	}
}

// renewAt is 2/3 into the current certificate's lifetime, counted from
// when it was obtained (its NotBefore is backdated for clock skew).
func (m *MemberCredentials) renewAt() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.issued.Add(m.cert.Leaf.NotAfter.Sub(m.issued) * 2 / 3)
}

func (m *MemberCredentials) renew(ctx context.Context) error {
	cert, leaf, err := m.issue(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lastErr = err
	if err != nil {
		return err
	}
	cert.Leaf = leaf
	m.cert, m.issued = &cert, m.now()
	// Connections that presented an older certificate go: gRPC reconnects
	// and the handshake presents this one.
	for c := range m.conns {
		if c.serial != "" && c.serial != leaf.SerialNumber.String() {
			_ = c.Conn.Close()
			delete(m.conns, c)
		}
	}
	m.logger.Info("member certificate obtained", "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	return nil
}

// DialOption makes the connection's dialer report the connections it
// opens, so that those opened with an older certificate are closed after a
// renewal.
func (m *MemberCredentials) DialOption() grpc.DialOption {
	var d net.Dialer
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		// The handshake that follows presents the current certificate.
		tc := &trackedConn{Conn: conn, m: m}
		if m.cert != nil {
			tc.serial = m.cert.Leaf.SerialNumber.String()
		}
		m.conns[tc] = struct{}{}
		return tc, nil
	})
}

// trackedConn is a connection opened while a given certificate was current.
type trackedConn struct {
	net.Conn
	m      *MemberCredentials
	serial string
	once   sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.m.mu.Lock()
		delete(c.m.conns, c)
		c.m.mu.Unlock()
	})
	return c.Conn.Close()
}
