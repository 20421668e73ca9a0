package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
)

// Transport delivers a sealed envelope to the gateway of organisation to
// and returns its reply. An error means the envelope may not have arrived.
type Transport interface {
	Deliver(ctx context.Context, to string, env *gatewayv1.Envelope) (*gatewayv1.Reply, error)
}

// ContentType is the media type of envelopes and replies over HTTP.
const ContentType = "application/x-protobuf; proto=trustfed.gateway.v1.Envelope"

const maxReplySize = MaxEnvelopeSize + 4096

// httpsTransport POSTs envelopes to the partners' URLs over mutual TLS:
// this node presents its member certificate, and the partner's gateway
// must present a member certificate of the partner organisation, both
// issued by the federation CA.
type httpsTransport struct {
	partners map[string]string
	roots    *x509.CertPool
	getCert  func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	now      func() time.Time

	mu      sync.Mutex
	clients map[string]*http.Client
}

func newHTTPSTransport(partners map[string]string, roots *x509.CertPool, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), now func() time.Time) *httpsTransport {
	return &httpsTransport{partners: partners, roots: roots, getCert: getCert, now: now, clients: map[string]*http.Client{}}
}

// client is the HTTP client of one partner: its TLS configuration accepts
// only a member certificate of that organisation.
func (t *httpsTransport) client(to string) *http.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.clients[to]; ok {
		return c
	}
	cfg := &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: t.getCert,
		// The partner's certificate is a member certificate (client
		// authentication usage, a SPIFFE URI, no DNS name): the standard
		// server check cannot take it, VerifyConnection does it instead.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyMemberPeer(cs, t.roots, t.now(), to)
		},
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}}
	t.clients[to] = c
	return c
}

func (t *httpsTransport) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.clients {
		c.CloseIdleConnections()
	}
}

// Deliver implements Transport.
func (t *httpsTransport) Deliver(ctx context.Context, to string, env *gatewayv1.Envelope) (*gatewayv1.Reply, error) {
	url, ok := t.partners[to]
	if !ok {
		return nil, refuse(CodeNoPartner, "no gateway URL configured for %q", to)
	}
	b, err := proto.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("deliver to %s: %w", to, err)
	}
	req.Header.Set("Content-Type", ContentType)
	resp, err := t.client(to).Do(req)
	if err != nil {
		return nil, fmt.Errorf("deliver to %s: %w", to, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReplySize+1))
	if err != nil {
		return nil, fmt.Errorf("deliver to %s: read the reply: %w", to, err)
	}
	if len(body) > maxReplySize {
		return nil, fmt.Errorf("deliver to %s: reply larger than %d bytes", to, maxReplySize)
	}
	var reply gatewayv1.Reply
	if err := proto.Unmarshal(body, &reply); err != nil {
		return nil, fmt.Errorf("deliver to %s: HTTP %d with a reply that does not parse: %w", to, resp.StatusCode, err)
	}
	return &reply, nil
}

// verifyMemberPeer checks that the peer presented a member certificate
// issued by the federation CA, valid at now, of organisation org ("" =
// any organisation).
func verifyMemberPeer(cs tls.ConnectionState, roots *x509.CertPool, now time.Time, org string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the peer presented no certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the peer's certificate is not a federation member certificate: %w", err)
	}
	o, _, ok := attestation.MemberFromCert(leaf)
	if !ok {
		return errors.New("the peer's certificate names no member node")
	}
	if org != "" && o != org {
		return fmt.Errorf("the peer is a node of %q, not of %q", o, org)
	}
	return nil
}

// ServerTLSConfig is the TLS configuration of the gateway's inbound HTTPS
// listener: it presents the node's member certificate and requires the
// peer's, issued by the federation CA.
func (g *Gateway) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return g.creds.GetClientCertificate(nil)
		},
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyMemberPeer(cs, g.cfg.FederationCA, g.now(), "")
		},
	}
}

// Handler is the gateway's inbound endpoint: POST an Envelope (protobuf),
// get a Reply. 200 accepted; 400 malformed; 403 refused; 503 when the
// gateway cannot confirm decisions (its stream is down); 500 when the
// agent failed. Over TLS, the peer's member certificate must be the
// envelope sender's node.
func (g *Gateway) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeReply(w, http.StatusMethodNotAllowed, refusal(refuse(CodeMalformed, "method %s: only POST", r.Method)))
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxEnvelopeSize))
		if err != nil {
			writeReply(w, http.StatusRequestEntityTooLarge, refusal(refuseErr(CodeMalformed, err, "envelope larger than %d bytes or unreadable", MaxEnvelopeSize)))
			return
		}
		var env gatewayv1.Envelope
		if err := proto.Unmarshal(b, &env); err != nil {
			writeReply(w, http.StatusBadRequest, refusal(refuseErr(CodeMalformed, err, "envelope does not parse")))
			return
		}
		if r.TLS != nil {
			if err := samePeer(r.TLS, &env); err != nil {
				writeReply(w, http.StatusForbidden, refusal(err))
				return
			}
		}
		reply := g.Receive(r.Context(), &env)
		writeReply(w, replyStatus(reply), reply)
	})
}

// samePeer refuses an envelope whose sender is not the TLS peer's node.
func samePeer(cs *tls.ConnectionState, env *gatewayv1.Envelope) error {
	var body gatewayv1.EnvelopeBody
	if err := proto.Unmarshal(env.Body, &body); err != nil {
		return refuseErr(CodeMalformed, err, "envelope: body does not parse")
	}
	if len(cs.PeerCertificates) == 0 {
		return refuse(CodeBadSender, "no TLS client certificate")
	}
	o, n, _ := attestation.MemberFromCert(cs.PeerCertificates[0])
	if o != body.SenderOrganizationId || n != body.SenderNodeId {
		return refuse(CodeBadSender, "the TLS peer is %s/%s, the envelope's sender %s/%s", o, n, body.SenderOrganizationId, body.SenderNodeId)
	}
	return nil
}

func replyStatus(r *gatewayv1.Reply) int {
	switch {
	case r.Accepted:
		return http.StatusOK
	case Code(r.Code) == CodeMalformed:
		return http.StatusBadRequest
	case Code(r.Code) == CodeUnconfirmed:
		return http.StatusServiceUnavailable
	case Code(r.Code) == CodeHandler:
		return http.StatusInternalServerError
	}
	return http.StatusForbidden
}

func writeReply(w http.ResponseWriter, status int, r *gatewayv1.Reply) {
	b, err := proto.Marshal(r)
	if err != nil {
		http.Error(w, "marshal reply", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf; proto=trustfed.gateway.v1.Reply")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
