// Command two-gateways is the member-gateway demo (`make demo`): a dev
// registry in this process, two organisations (acme-bank, globex-ins) with
// an agreement for "task_send", one gateway each over mutual TLS on
// loopback. acme-bank sends tasks and globex-ins answers; halfway the
// federation revokes globex-ins, and the next message is refused on both
// sides.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/client/gateway"
	"github.com/trustfed/trustfed/client/threat"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/server"
)

func main() {
	verbose := flag.Bool("v", false, "show the registry's and the gateways' logs")
	tasks := flag.Int("tasks", 6, "tasks to send (the revocation comes after half of them)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *verbose, *tasks); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, verbose bool, tasks int) error {
	logOut := io.Discard
	if verbose {
		logOut = os.Stderr
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(logOut, nil)))

	dir, err := os.MkdirTemp("", "trustfed-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dev, stopDev, err := startRegistry(ctx, dir, logOut)
	if err != nil {
		return err
	}
	defer stopDev()
	say("registry", "dev registry on %s (data in %s)", dev.GRPCAddr, dir)

	admin, err := client.New(ctx, client.Config{Addr: dev.GRPCAddr, Token: dev.AdminToken, CACertFile: dev.CAFile, Timeout: 30 * time.Second})
	if err != nil {
		return err
	}
	defer admin.Close()
	adminKey, err := attestation.LoadPrivateKey(dev.AdminKeyFile)
	if err != nil {
		return err
	}
	fed, err := newFederation(admin, adminKey)
	if err != nil {
		return err
	}
	const a, b = "acme-bank", "globex-ins"
	if err := fed.accredit(ctx); err != nil {
		return err
	}
	for _, org := range []string{a, b} {
		if err := fed.register(ctx, org, 3); err != nil {
			return err
		}
	}
	if err := fed.agree(ctx, a, b, "task_send"); err != nil {
		return err
	}
	say("registry", "%s and %s registered at level 3 (TRUSTED), agreement for task_send signed", a, b)

	ca, err := attestation.LoadCertPool(dev.CAFile)
	if err != nil {
		return err
	}
	la, lb, err := listen2()
	if err != nil {
		return err
	}
	urlA, urlB := "https://"+la.Addr().String()+"/trustfed/envelope", "https://"+lb.Addr().String()+"/trustfed/envelope"
	revoked := make(chan struct{})
	var once sync.Once
	ga, err := startGateway(ctx, fed, dev.GRPCAddr, ca, a, "gw-1", la, map[string]string{b: urlB}, nil, func(ev *trustfedv1.Event) {
		if ev.GetKind() == trustfedv1.EventKind_EVENT_KIND_REVOCATION && ev.GetOrganizationId() == b {
			once.Do(func() { close(revoked) })
		}
	})
	if err != nil {
		return err
	}
	defer ga.stop()
	gb, err := startGateway(ctx, fed, dev.GRPCAddr, ca, b, "gw-1", lb, map[string]string{a: urlA},
		func(_ context.Context, m *gateway.Message) ([]byte, error) {
			say(b, "received %q from %s/%s (decision at index %d, level %d)", m.Payload, m.From, m.FromNode, m.Decision.Index, m.Decision.EffectiveLevel)
			return []byte("done: " + string(m.Payload)), nil
		}, nil)
	if err != nil {
		return err
	}
	defer gb.stop()
	say("gateways", "%s at %s, %s at %s (mutual TLS with member certificates)", a, urlA, b, urlB)

	for i := 1; i <= tasks; i++ {
		if i == tasks/2+1 {
			say("registry", "the federation authority revokes %s", b)
			start := time.Now()
			if err := fed.revoke(ctx, b); err != nil {
				return err
			}
			// The revocation reaches acme-bank's gateway through its event
			// stream within milliseconds; the demo waits for it so that the
			// next message shows the steady state.
			select {
			case <-revoked:
				say("registry", "the revocation reached %s's gateway %s after it was proposed", a, time.Since(start).Round(time.Millisecond))
			case <-time.After(10 * time.Second):
				return errors.New("the revocation did not reach acme-bank's gateway within 10s")
			}
		}
		task := fmt.Sprintf("task %d: reconcile ledger batch %d", i, 1000+i)
		ans, err := ga.Send(ctx, b, "task_send", []byte(task), gateway.SendOptions{})
		if err != nil {
			say(a, "REFUSED to send %q: %v", task, err)
		} else {
			say(a, "sent %q, answer %q", task, ans.Payload)
		}
		// globex-ins tries to reach acme-bank on its own.
		if _, err := gb.Send(ctx, a, "task_send", []byte(fmt.Sprintf("status %d", i)), gateway.SendOptions{}); err != nil {
			say(b, "REFUSED: its message to %s: %v", a, err)
		} else {
			say(b, "sent status %d to %s", i, a)
		}
	}
	s := ga.Stats()
	say("stats", "%s: %d registry checks, %d cache hits, %d events; %s refused %d inbound envelopes", a, s.RegistryChecks, s.CacheHits, s.Events, a, s.Refused)
	return nil
}

// out is where the demo tells its story (gateways' goroutines too, hence
// outMu).
var (
	out   io.Writer = os.Stdout
	outMu sync.Mutex
)

func say(who, format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(out, "%-11s %s\n", who, fmt.Sprintf(format, args...))
}

// registryInfo is where the in-process dev registry listens.
type registryInfo struct {
	GRPCAddr, CAFile, AdminToken, AdminKeyFile string
}

func startRegistry(ctx context.Context, dir string, logOut io.Writer) (registryInfo, func(), error) {
	cfg := server.DefaultConfig()
	cfg.Dev, cfg.DataDir, cfg.LogOutput, cfg.Version = true, dir, logOut, "demo"
	cfg.RaftAddr, cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ready := make(chan server.DevInfo, 1)
	cfg.DevReady = func(d server.DevInfo) { ready <- d }
	srv, err := server.New(cfg)
	if err != nil {
		return registryInfo{}, nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	stop := func() { cancel(); <-done }
	select {
	case d := <-ready:
		return registryInfo{GRPCAddr: d.GRPCAddr, CAFile: d.CAFile, AdminToken: strings.TrimSpace(d.AdminToken), AdminKeyFile: d.AdminKeyFile}, stop, nil
	case err := <-done:
		cancel()
		return registryInfo{}, nil, fmt.Errorf("dev registry stopped: %w", err)
	case <-time.After(60 * time.Second):
		stop()
		return registryInfo{}, nil, errors.New("dev registry not ready after 60s")
	}
}

func listen2() (net.Listener, net.Listener, error) {
	la, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	lb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		la.Close()
		return nil, nil, err
	}
	return la, lb, nil
}

// threats is the default rule-based threat gate, shared (it is safe for
// concurrent use).
var threats = threat.NewRuleGate(threat.Config{})

// demoAgreementKey is the HMAC key both organisations use for values their
// agreement's controls HASH. A real deployment derives it per agreement
// from a secret the two organisations share (docs/gateway.md).
func demoAgreementKey(_ context.Context, agreementID string) ([]byte, error) {
	sum := sha256.Sum256([]byte("two-gateways demo key for " + agreementID))
	return sum[:], nil
}

// runningGateway is a gateway with its event stream and HTTPS listener.
type runningGateway struct {
	*gateway.Gateway
	stop func()
}

// startGateway enrols node of org and runs its gateway: the event stream
// (Run) and the inbound HTTPS listener on ln, with the PII pipeline
// (client/pii: the decision's controls applied on the way out, checked on
// the way in) and the default threat gate (client/threat) both ways.
func startGateway(ctx context.Context, fed *federation, registry string, ca *x509.CertPool, org, node string, ln net.Listener, partners map[string]string,
	deliver func(context.Context, *gateway.Message) ([]byte, error), onEvent func(*trustfedv1.Event)) (*runningGateway, error) {
	key, err := fed.enrol(ctx, org, node)
	if err != nil {
		return nil, err
	}
	g, err := gateway.New(ctx, gateway.Config{
		Organization: org, Node: node, Key: key, Registries: []string{registry}, FederationCA: ca, Partners: partners,
		Policy: gateway.PIIPolicy{HashKey: demoAgreementKey}, OutboundGate: gateway.ThreatGate{Gate: threats}, InboundGate: gateway.ThreatGate{Gate: threats}, Deliver: deliver,
		OnEvent: func(ev *trustfedv1.Event) {
			say(org, "registry event %s about %s: cached decisions naming it dropped", ev.GetKind(), ev.GetOrganizationId())
			if onEvent != nil {
				onEvent(ev)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.Run(rctx) })
	srv := &http.Server{Handler: g.Handler(), TLSConfig: g.ServerTLSConfig(), ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() { _ = srv.Serve(tls.NewListener(ln, srv.TLSConfig)) })
	rg := &runningGateway{Gateway: g, stop: func() {
		_ = srv.Close()
		cancel()
		wg.Wait()
		_ = g.Close()
	}}
	rctxReady, cancelReady := context.WithTimeout(ctx, 30*time.Second)
	defer cancelReady()
	if err := g.Ready(rctxReady); err != nil {
		rg.stop()
		return nil, err
	}
	return rg, nil
}
