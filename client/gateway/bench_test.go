package gateway_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client/gateway"
	"github.com/trustfed/trustfed/internal/testutil"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// BenchmarkCachedDecisionHit: a decision served from the warm cache
// (target ≤ 1 µs, 0 allocations).
func BenchmarkCachedDecisionHit(b *testing.B) {
	f := startFed(b, []string{"bank-a", "bank-b"}, "task_send")
	a := f.start(b, "bank-a", listen(b), nil, func(c *gateway.Config) { c.Transport = newCapture() })
	ctx := ctxT(b)
	opts := gateway.SendOptions{DataTypes: []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_EMAIL}}
	_, err := a.Decide(ctx, "bank-b", "task_send", opts)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := a.Decide(ctx, "bank-b", "task_send", opts); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	require.Equal(b, uint64(1), a.Stats().RegistryChecks, "every call after the first is a hit")
}

// BenchmarkEnvelopeSealOpen: the sender's seal (serialize + sign) and the
// receiver's open (certificate chain + signature) of a 1 KiB payload.
func BenchmarkEnvelopeSealOpen(b *testing.B) {
	now := time.Now()
	ca, err := attestation.NewCA("federation", now, time.Hour)
	require.NoError(b, err)
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	certPEM, _, _, err := ca.IssueMember("bank-a", "node-1", pub, now, time.Hour)
	require.NoError(b, err)
	leaf, err := attestation.ParseCertificatePEM(certPEM)
	require.NoError(b, err)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	body := &gatewayv1.EnvelopeBody{
		Version: gateway.EnvelopeVersion, SenderOrganizationId: "bank-a", SenderNodeId: "node-1", RecipientOrganizationId: "bank-b",
		Action: "task_send", Payload: make([]byte, 1024), Nonce: make([]byte, gateway.NonceSize), SendTime: timestamppb.New(now),
		Decision: &gatewayv1.Decision{Statement: make([]byte, 300)}, SenderCertificate: leaf.Raw,
	}
	b.Run("seal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := gateway.Seal(key, body); err != nil {
				b.Fatal(err)
			}
		}
	})
	env, err := gateway.Seal(key, body)
	require.NoError(b, err)
	b.Run("open", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := gateway.OpenEnvelope(env, roots, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSendToHandler: Send → the partner's Handler over loopback
// HTTPS with mutual TLS, warm caches on both sides (the receiver has
// verified the decision once), one-way messages of 256 bytes from 8
// goroutines. Reports messages/s.
func BenchmarkSendToHandler(b *testing.B) {
	f := startFed(b, []string{"bank-a", "bank-b"}, "task_send")
	oneWay := func(c *gateway.Config) { c.Deliver = nil }
	a, _ := f.pair(b, "bank-a", "bank-b", oneWay)
	ctx := ctxT(b)
	payload := make([]byte, 256)
	_, err := a.Send(ctx, "bank-b", "task_send", payload, gateway.SendOptions{})
	require.NoError(b, err)
	b.SetParallelism(4) // 4 × GOMAXPROCS goroutines
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Send(ctx, "bank-b", "task_send", payload, gateway.SendOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkInvalidationLatency: the time from an admin change that
// produces an event about bank-x (a declared-level change; each b.N one
// event) being proposed until every connected gateway of its partners (two
// nodes of bank-a, one of bank-y) has applied it, i.e. stopped serving
// decisions naming bank-x. Reports p50/p99/max over the events. Run with
// -benchtime 1000x for the 1,000-event measure; the registry commit is
// inside the measure.
func BenchmarkInvalidationLatency(b *testing.B) {
	f := startFed(b, []string{"bank-x", "bank-a", "bank-y"}, "task_send")
	type seen struct {
		mu    sync.Mutex
		at    map[uint64][]time.Time // event index → when each gateway applied it
		stamp map[uint64]time.Time   // event index → its commit stamp
	}
	s := &seen{at: map[uint64][]time.Time{}, stamp: map[uint64]time.Time{}}
	applied := make(chan uint64, 4096)
	onEvent := func(c *gateway.Config) {
		c.Transport = newCapture()
		c.OnEvent = func(ev *trustfedv1.Event) {
			if ev.GetOrganizationId() != "bank-x" {
				return
			}
			now := time.Now()
			s.mu.Lock()
			s.at[ev.GetIndex()] = append(s.at[ev.GetIndex()], now)
			s.stamp[ev.GetIndex()] = ev.GetTime().AsTime()
			n := len(s.at[ev.GetIndex()])
			s.mu.Unlock()
			if n == 3 {
				applied <- ev.GetIndex()
			}
		}
	}
	f.start(b, "bank-a", listen(b), nil, onEvent)
	f.start(b, "bank-a", listen(b), nil, onEvent)
	f.start(b, "bank-y", listen(b), nil, onEvent)
	var lat, fromStamp []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		level := uint32(2 + i%2)
		start := time.Now()
		f.apply(b, testutil.SetLevel("bank-x", level))
		var idx uint64
		select {
		case idx = <-applied:
		case <-time.After(30 * time.Second):
			b.Fatalf("event %d not applied by every gateway within 30s", i)
		}
		s.mu.Lock()
		last := slices.MaxFunc(s.at[idx], func(x, y time.Time) int { return x.Compare(y) })
		s.mu.Unlock()
		lat = append(lat, last.Sub(start))
		fromStamp = append(fromStamp, last.Sub(s.stamp[idx]))
	}
	b.StopTimer()
	reportLatency(b, lat, "")
	reportLatency(b, fromStamp, "commit-")
	b.Logf("%d events, 3 gateways each", len(lat))
}

// reportLatency reports p50, p99 and max of lat in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration, prefix string) {
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), prefix+"p50-ms")
	b.ReportMetric(q(0.99), prefix+"p99-ms")
	b.ReportMetric(q(1), prefix+"max-ms")
}

// BenchmarkRevocationStopsGateways: each b.N a fresh partner organisation
// of bank-a (registered, agreement signed, a decision cached by both of
// bank-a's gateways) is revoked; measured from the admin change's
// proposal until both gateways have applied the revocation and refuse to
// send to it from their cache. Setup is outside the timer.
func BenchmarkRevocationStopsGateways(b *testing.B) {
	f := startFed(b, []string{"bank-a"})
	var mu sync.Mutex
	applied := map[string]int{}
	done := make(chan string, 16)
	onEvent := func(c *gateway.Config) {
		c.Transport = newCapture()
		c.OnEvent = func(ev *trustfedv1.Event) {
			if ev.GetKind() != trustfedv1.EventKind_EVENT_KIND_REVOCATION {
				return
			}
			mu.Lock()
			applied[ev.GetOrganizationId()]++
			n := applied[ev.GetOrganizationId()]
			mu.Unlock()
			if n == 2 {
				done <- ev.GetOrganizationId()
			}
		}
	}
	g1 := f.start(b, "bank-a", listen(b), nil, onEvent)
	g2 := f.start(b, "bank-a", listen(b), nil, onEvent)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		org := fmt.Sprintf("partner-%d", i)
		reg, sig := f.fed.Registration(org, 3, 3, time.Now())
		_, err := f.admin.Membership().RegisterOrganization(ctxT(b), &trustfedv1.RegisterOrganizationRequest{Registration: reg, Signature: sig})
		require.NoError(b, err)
		_, err = f.admin.Admin().ApproveOrganization(ctxT(b), &trustfedv1.ApproveOrganizationRequest{OrganizationId: org})
		require.NoError(b, err)
		f.agree(b, "bank-a", org, "task_send")
		for _, g := range []*testGateway{g1, g2} {
			_, err := g.Decide(ctxT(b), org, "task_send", gateway.SendOptions{})
			require.NoError(b, err)
		}
		b.StartTimer()
		start := time.Now()
		f.revoke(b, org)
		select {
		case got := <-done:
			require.Equal(b, org, got)
		case <-time.After(30 * time.Second):
			b.Fatalf("revocation of %s not applied by both gateways within 30s", org)
		}
		lat = append(lat, time.Since(start))
		b.StopTimer()
		for _, g := range []*testGateway{g1, g2} {
			st, err := g.Decide(ctxT(b), org, "task_send", gateway.SendOptions{})
			require.NoError(b, err)
			require.Equal(b, trustfedv1.Decision_DECISION_DENY, st.Decision, "no cached ALLOW survives the revocation")
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportLatency(b, lat, "")
}
