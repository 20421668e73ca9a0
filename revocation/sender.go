package revocation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
)

// Errors of the senders.
var (
	// ErrNotAcknowledged: the partner answered, but not with an
	// acknowledgement (a non-2xx status).
	ErrNotAcknowledged = errors.New("notification not acknowledged")
	// ErrNoEndpoints: the target has no webhook endpoint (or FirstOf no
	// sender).
	ErrNoEndpoints = errors.New("no endpoint to notify")
	// ErrEndpoint: a webhook endpoint is not an absolute https URL.
	ErrEndpoint = errors.New("invalid webhook endpoint")
)

// FirstOf returns a Sender that tries senders in order and returns the first
// acknowledgement: the registry puts the stream channel first and falls back
// to webhooks. When all fail, the error joins theirs.
func FirstOf(senders ...Sender) Sender {
	return SenderFunc(func(ctx context.Context, t Target, n Notification) (Channel, error) {
		if len(senders) == 0 {
			return "", fmt.Errorf("notify %s: %w: no sender", t.Partner, ErrNoEndpoints)
		}
		errs := make([]error, 0, len(senders))
		for _, s := range senders {
			ch, err := s.Send(ctx, t, n)
			if err == nil {
				return ch, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
		}
		return "", errors.Join(errs...)
	})
}

// Defaults of WebhookConfig.
const (
	DefaultWebhookTimeout  = 5 * time.Second
	DefaultMaxConnsPerHost = 1024
	defaultMaxIdleConns    = 4096
	// signatureReuse is how long the signed headers of a notification are
	// reused across partners and retries before being signed afresh: the
	// message names no recipient, so every partner gets the same bytes.
	signatureReuse = 10 * time.Second
	// maxDrain is how much of a response body is read so the connection can
	// be reused.
	maxDrain = 64 << 10
)

// WebhookConfig configures a WebhookSender.
type WebhookConfig struct {
	// Signer is the key the sending node signs with at a time (its endorsed
	// node key). Without it, Key signs and KeyID names it to receivers (the
	// registry key of a cluster without node keys, and tests).
	Signer WebhookSigner
	Key    ed25519.PrivateKey
	KeyID  string
	// TLS is the client TLS configuration (RootCAs for tests or a private
	// PKI); nil means the system roots. It is cloned.
	TLS *tls.Config
	// Timeout bounds each HTTP request, connection and TLS handshake
	// included (default 5 s).
	Timeout time.Duration
	// MaxConnsPerHost bounds the connections, and the idle ones kept, per
	// host (default 1024).
	MaxConnsPerHost int
	// Now stamps the signatures; nil means time.Now.
	Now func() time.Time
}

// WebhookSender delivers notifications as signed HTTPS POSTs: it tries a
// target's endpoints in order until one answers 2xx. It is safe for
// concurrent use; connections are kept alive and reused.
type WebhookSender struct {
	signer    WebhookSigner
	timeout   time.Duration
	now       func() time.Time
	client    *http.Client
	transport *http.Transport

	mu     sync.Mutex
	signed signedHeaders // the last signature made
	// byCA are the clients for partners that registered their own CA
	// certificates, by that PEM text: the sender's roots plus those CAs.
	byCA map[string]*http.Client
}

// maxCAClients bounds byCA; past it the cache starts afresh (a partner
// changing its CAs leaves an unused entry behind).
const maxCAClients = 1024

// caClientSessions is the TLS session cache size of a partner's client.
const caClientSessions = 64

// signedHeaders caches the headers signed for one notification.
type signedHeaders struct {
	eventID string
	body    []byte
	at      time.Time
	header  http.Header
}

// NewWebhookSender returns a WebhookSender.
func NewWebhookSender(cfg WebhookConfig) (*WebhookSender, error) {
	if cfg.Signer == nil {
		if len(cfg.Key) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("new webhook sender: ed25519 private key of %d bytes", len(cfg.Key))
		}
		if !validEventID(cfg.KeyID) {
			return nil, fmt.Errorf("new webhook sender: key id %q is not 1..%d visible ASCII characters", cfg.KeyID, maxEventIDLen)
		}
		s, err := attestation.NewFileSigner(cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("new webhook sender: %w", err)
		}
		id := cfg.KeyID
		cfg.Signer = func(time.Time) (attestation.Signer, string, error) { return s, id, nil }
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultWebhookTimeout
	}
	if cfg.MaxConnsPerHost <= 0 {
		cfg.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.TLS != nil {
		tlsConfig = cfg.TLS.Clone()
		tlsConfig.MinVersion = max(tlsConfig.MinVersion, tls.VersionTLS12)
	}
	if tlsConfig.ClientSessionCache == nil { // resume sessions on reconnects
		tlsConfig.ClientSessionCache = tls.NewLRUClientSessionCache(defaultMaxIdleConns)
	}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          defaultMaxIdleConns,
		MaxIdleConnsPerHost:   cfg.MaxConnsPerHost,
		MaxConnsPerHost:       cfg.MaxConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
	}
	return &WebhookSender{
		signer:    cfg.Signer,
		timeout:   cfg.Timeout,
		now:       cfg.Now,
		client:    newWebhookClient(tr),
		transport: tr,
		byCA:      map[string]*http.Client{},
	}, nil
}

func newWebhookClient(tr *http.Transport) *http.Client {
	return &http.Client{
		Transport: tr,
		// A redirect is not an acknowledgement, and must not send the
		// notification elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// clientFor is the client for a partner's endpoints: the shared one, or
// for a partner with its own CA certificates one that trusts the sender's
// roots (the system's, or the configured RootCAs) and those CAs.
func (s *WebhookSender) clientFor(caPEM string) (*http.Client, error) {
	if caPEM == "" {
		return s.client, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.byCA[caPEM]; ok {
		return c, nil
	}
	base := s.transport.TLSClientConfig
	var pool *x509.CertPool
	if base.RootCAs != nil {
		pool = base.RootCAs.Clone()
	} else if sys, err := x509.SystemCertPool(); err == nil {
		pool = sys
	} else {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, fmt.Errorf("%w: the partner's CA certificates hold no certificate", ErrEndpoint)
	}
	tr := s.transport.Clone()
	tr.TLSClientConfig.RootCAs = pool
	// Sessions made under this partner's CAs stay with this client (crypto/tls
	// also checks a resumed session's roots; this keeps the caches apart).
	tr.TLSClientConfig.ClientSessionCache = tls.NewLRUClientSessionCache(caClientSessions)
	if len(s.byCA) >= maxCAClients {
		for k, c := range s.byCA {
			c.CloseIdleConnections()
			delete(s.byCA, k)
		}
	}
	c := newWebhookClient(tr)
	s.byCA[caPEM] = c
	return c, nil
}

// Close closes the idle connections.
func (s *WebhookSender) Close() {
	s.transport.CloseIdleConnections()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.byCA {
		c.CloseIdleConnections()
	}
}

// Send posts n to t's endpoints in order until one answers 2xx.
func (s *WebhookSender) Send(ctx context.Context, t Target, n Notification) (Channel, error) {
	if len(t.Endpoints) == 0 {
		return ChannelWebhook, fmt.Errorf("webhook to %s: %w", t.Partner, ErrNoEndpoints)
	}
	h, err := s.headers(n)
	if err != nil {
		return ChannelWebhook, fmt.Errorf("webhook to %s: %w", t.Partner, err)
	}
	client, err := s.clientFor(t.CAPEM)
	if err != nil {
		return ChannelWebhook, fmt.Errorf("webhook to %s: %w", t.Partner, err)
	}
	errs := make([]error, 0, len(t.Endpoints))
	for _, ep := range t.Endpoints {
		err := s.post(ctx, client, ep, h, n.Body)
		if err == nil {
			return ChannelWebhook, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return ChannelWebhook, fmt.Errorf("webhook to %s: %w", t.Partner, errors.Join(errs...))
}

// headers returns the signed headers of n, reusing a recent signature of the
// same notification.
func (s *WebhookSender) headers(n Notification) (http.Header, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.signed
	if c.header != nil && c.eventID == n.EventID && bytes.Equal(c.body, n.Body) &&
		!now.Before(c.at) && now.Sub(c.at) < signatureReuse {
		return c.header, nil
	}
	signer, keyID, err := s.signer(now)
	if err != nil {
		return nil, fmt.Errorf("webhook signing key: %w", err)
	}
	h, err := SignWebhookWith(context.Background(), signer, keyID, n.EventID, now, n.Body)
	if err != nil {
		return nil, err
	}
	ct := n.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	*c = signedHeaders{eventID: n.EventID, body: bytes.Clone(n.Body), at: now, header: h}
	return h, nil
}

// post makes one request to endpoint.
func (s *WebhookSender) post(ctx context.Context, client *http.Client, endpoint string, h http.Header, body []byte) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: %q is not an absolute https URL", ErrEndpoint, endpoint)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header = h.Clone() // the transport may add to it
	resp, err := client.Do(req)
	if err != nil {
		return err // *url.Error names the method and URL
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s answered %s", ErrNotAcknowledged, u.Redacted(), resp.Status)
	}
	return nil
}
