package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Defaults of Config.
const (
	// DefaultWindow is how far an envelope's send_time may be from the
	// receiver's clock.
	DefaultWindow = 2 * time.Minute
	// DefaultReplayCapacity bounds the replay store (nonces remembered for
	// 2×Window).
	DefaultReplayCapacity = 1 << 20
	// DefaultRegistryTimeout bounds each registry call.
	DefaultRegistryTimeout = 10 * time.Second
)

// Config describes one member node's gateway.
type Config struct {
	// Organization and Node name the member node (as enrolled).
	Organization, Node string
	// Key is the node's enrolled ed25519 key: it obtains the node's member
	// certificates and signs every envelope.
	Key ed25519.PrivateKey
	// Registries are the gRPC addresses (host:port) of registry nodes,
	// tried in turn when one is unreachable.
	Registries []string
	// FederationCA verifies the registry nodes, the partners' gateways and
	// the member certificates in envelopes.
	FederationCA *x509.CertPool
	// CertificateValidity is the lifetime asked for the node's member
	// certificates (0 = the registry's default); they renew at 2/3.
	CertificateValidity time.Duration

	// Partners maps a partner organisation to its gateway's URL
	// (https://host:port/path), for the default HTTPS transport.
	Partners map[string]string
	// Transport delivers envelopes (nil = HTTPS with mutual TLS: the
	// node's member certificate both ways).
	Transport Transport

	// Policy applies the decisions' data-handling controls; nil refuses
	// every payload (fail closed).
	Policy PayloadPolicy
	// OutboundGate and InboundGate inspect messages for threats; nil
	// refuses every message (fail closed).
	OutboundGate, InboundGate Gate
	// Deliver hands a verified inbound message to the receiving agent; a
	// non-nil answer goes back to the sender as a sealed envelope. nil
	// accepts and drops messages.
	Deliver func(ctx context.Context, m *Message) ([]byte, error)

	// OnEvent, if set, is called with each registry event after the
	// gateway applied it (decisions invalidated, sessions ended): for logs
	// and metrics. It must not block.
	OnEvent func(*trustfedv1.Event)

	// Window bounds the clock difference accepted on envelopes
	// (DefaultWindow if 0).
	Window time.Duration
	// ReplayCapacity bounds the replay store (DefaultReplayCapacity if 0):
	// when it is full of live nonces, inbound envelopes are refused.
	ReplayCapacity int
	// AllowSingleNodeDecisions accepts decisions one registry node vouches
	// for alone (a registry run with -unaudited-decisions). Off: only
	// quorum-certified decisions are used or accepted.
	AllowSingleNodeDecisions bool
	// RegistryTimeout bounds each registry call (DefaultRegistryTimeout if 0).
	RegistryTimeout time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Logger (slog.Default if nil).
	Logger *slog.Logger
}

// Gateway is one member node's gateway. It is safe for concurrent use.
// Run it (Run) to keep the invalidation stream open: without it the cache
// never serves and inbound envelopes are refused (UNCONFIRMED).
type Gateway struct {
	// refusals waits for reportLoop (report.go).
	refusals chan *trustfedv1.AuditGatewayRefusal
	cfg      Config
	now      func() time.Time
	log      *slog.Logger
	policy   PayloadPolicy
	outG     Gate
	inG      Gate
	opts     attestation.VerifyOptions

	creds     *client.MemberCredentials
	bootstrap *client.Client
	regs      *registries
	keys      *keyring
	cache     *decisionCache
	flight    singleflight.Group
	replay    *replayStore
	verified  *verifiedStatements
	certs     certCache
	transport Transport

	stats counters

	streamMu     sync.Mutex
	streamCancel context.CancelFunc // of the current stream

	ready     chan struct{} // closed once the stream first resynchronised
	readyOnce sync.Once
	sessions  sessionSet
}

// New obtains the node's member certificate from a registry, fetches the
// registry's keys and returns the gateway. Call Run to start it and Close
// to release it.
func New(ctx context.Context, cfg Config) (*Gateway, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	g := &Gateway{cfg: cfg, now: cfg.Now, log: cfg.Logger, policy: cfg.Policy, outG: cfg.OutboundGate, inG: cfg.InboundGate,
		opts: attestation.VerifyOptions{AllowSingleNode: cfg.AllowSingleNodeDecisions}, ready: make(chan struct{}),
		refusals: make(chan *trustfedv1.AuditGatewayRefusal, refusalQueue)}
	if g.now == nil {
		g.now = time.Now
	}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.log = g.log.With("component", "gateway", "organization_id", cfg.Organization, "node_id", cfg.Node)
	if g.policy == nil {
		g.policy = refuseAll{}
	}
	if g.outG == nil {
		g.outG = refuseAll{}
	}
	if g.inG == nil {
		g.inG = refuseAll{}
	}
	window := cfg.Window
	if window <= 0 {
		window = DefaultWindow
	}
	g.cfg.Window = window
	capacity := cfg.ReplayCapacity
	if capacity <= 0 {
		capacity = DefaultReplayCapacity
	}
	timeout := cfg.RegistryTimeout
	if timeout <= 0 {
		timeout = DefaultRegistryTimeout
	}
	g.replay = newReplayStore(capacity, 2*window)
	g.verified = newVerifiedStatements(capacity)
	g.cache = newDecisionCache(cfg.Organization)
	tlsCfg := &tls.Config{RootCAs: cfg.FederationCA, MinVersion: tls.VersionTLS13}
	if err := g.obtainCredentials(ctx, tlsCfg, timeout); err != nil {
		return nil, fmt.Errorf("new gateway %s/%s: %w", cfg.Organization, cfg.Node, err)
	}
	g.regs = &registries{}
	for _, addr := range cfg.Registries {
		c, err := client.New(ctx, g.creds.Configure(client.Config{Addr: addr, TLS: tlsCfg, Timeout: timeout}))
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("new gateway: registry %s: %w", addr, err)
		}
		g.regs.clients = append(g.regs.clients, c)
	}
	g.keys = &keyring{regs: g.regs, now: g.now}
	if _, err := g.keys.refresh(ctx, true); err != nil {
		g.Close()
		return nil, fmt.Errorf("new gateway: %w", err)
	}
	g.transport = cfg.Transport
	if g.transport == nil {
		g.transport = newHTTPSTransport(cfg.Partners, cfg.FederationCA, g.creds.GetClientCertificate, g.now)
	}
	return g, nil
}

func (cfg *Config) validate() error {
	switch {
	case cfg.Organization == "" || cfg.Node == "":
		return errors.New("organization and node are required")
	case len(cfg.Key) != ed25519.PrivateKeySize:
		return fmt.Errorf("key: an ed25519 private key is required, got %d bytes", len(cfg.Key))
	case len(cfg.Registries) == 0:
		return errors.New("registries: at least one registry address is required")
	case cfg.FederationCA == nil:
		return errors.New("federation CA is required")
	}
	for org, u := range cfg.Partners {
		if org == "" || u == "" {
			return fmt.Errorf("partners: empty organisation or URL (%q: %q)", org, u)
		}
	}
	return nil
}

// obtainCredentials gets the node's first member certificate from the
// first registry that answers, and keeps it renewed.
func (g *Gateway) obtainCredentials(ctx context.Context, tlsCfg *tls.Config, timeout time.Duration) error {
	var errs []error
	for _, addr := range g.cfg.Registries {
		c, err := client.New(ctx, client.Config{Addr: addr, TLS: tlsCfg, Timeout: timeout})
		if err != nil {
			errs = append(errs, fmt.Errorf("registry %s: %w", addr, err))
			continue
		}
		creds, err := client.NewMemberCredentials(context.WithoutCancel(ctx), c, g.cfg.Organization, g.cfg.Node, g.cfg.Key, g.cfg.CertificateValidity)
		if err != nil {
			_ = c.Close()
			errs = append(errs, fmt.Errorf("registry %s: %w", addr, err))
			continue
		}
		g.creds, g.bootstrap = creds, c
		return nil
	}
	return fmt.Errorf("member certificate: %w", errors.Join(errs...))
}

// Organization is the gateway's organisation.
func (g *Gateway) Organization() string { return g.cfg.Organization }

// Certificate is the node's current member certificate.
func (g *Gateway) Certificate() *x509.Certificate { return g.creds.Certificate() }

// Run keeps the invalidation stream open (reconnecting, to the next
// registry address when one fails) and acknowledges the events it
// carries, until ctx ends. It returns nil then.
func (g *Gateway) Run(ctx context.Context) error {
	acks := make(chan *trustfedv1.Event, 1024)
	var wg sync.WaitGroup
	wg.Go(func() { g.ackLoop(ctx, acks) })
	wg.Go(func() { g.refreshKeys(ctx) })
	wg.Go(func() { g.reportLoop(ctx) })
	g.watch(ctx, acks)
	wg.Wait()
	return nil
}

// KeyRefreshInterval is how often Run fetches the registry's keys again,
// so that a node key revoked since is no longer trusted (no event
// announces key changes; a decision that does not verify also triggers a
// fetch).
const KeyRefreshInterval = time.Minute

func (g *Gateway) refreshKeys(ctx context.Context) {
	t := time.NewTicker(KeyRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := g.keys.refresh(ctx, true); err != nil && ctx.Err() == nil {
				g.log.Warn("refreshing the registry's keys failed; keeping the ones held", "error", err)
			}
		}
	}
}

// Ready waits until the invalidation stream has resynchronised once (the
// cache serves and inbound envelopes can be confirmed).
func (g *Gateway) Ready(ctx context.Context) error {
	select {
	case <-g.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gateway not ready: %w", ctx.Err())
	}
}

// Healthy reports whether the invalidation stream is up to date.
func (g *Gateway) Healthy() bool { return g.cache.healthy.Load() }

// Close stops the certificate renewals, open sessions' heartbeats and
// closes the registry connections. Stop Run first.
func (g *Gateway) Close() error {
	var errs []error
	g.sessions.closeAll()
	if g.regs != nil {
		errs = append(errs, g.regs.close())
	}
	if g.creds != nil {
		errs = append(errs, g.creds.Close())
	}
	if g.bootstrap != nil {
		errs = append(errs, g.bootstrap.Close())
	}
	if c, ok := g.transport.(interface{ close() }); ok {
		c.close()
	}
	return errors.Join(errs...)
}

// Stats are counters of a gateway since New.
type Stats struct {
	// CacheHits are decisions served from the cache; RegistryChecks the
	// CheckInteraction calls made (concurrent misses share one).
	CacheHits, RegistryChecks uint64
	// Events are the registry events applied; Refused the inbound
	// envelopes refused.
	Events, Refused uint64
	// RefusalsReported are refusals written to the registry's audit log;
	// RefusalsDropped those that could not be (queue full, registry
	// unreachable).
	RefusalsReported, RefusalsDropped uint64
}

type counters struct {
	cacheHits, registryChecks, events, refused atomic.Uint64
	refusalsReported, refusalsDropped          atomic.Uint64
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() Stats {
	return Stats{CacheHits: g.stats.cacheHits.Load(), RegistryChecks: g.stats.registryChecks.Load(),
		Events: g.stats.events.Load(), Refused: g.stats.refused.Load(),
		RefusalsReported: g.stats.refusalsReported.Load(), RefusalsDropped: g.stats.refusalsDropped.Load()}
}
