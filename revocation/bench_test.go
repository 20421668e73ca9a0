//go:build unix

package revocation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
)

// benchRecorder stamps each partner's ack and forwards the acks to a
// Batcher, as the registry does.
type benchRecorder struct {
	start   time.Time
	index   map[string]int // partner -> position; read-only during Run
	ackedAt []atomic.Int64 // nanoseconds after start
	batch   *Batcher[string]
}

func (r *benchRecorder) Attempt(string, time.Time, int, error) {}
func (r *benchRecorder) Escalate(string, time.Time)            {}
func (r *benchRecorder) Acked(partner string, _ Channel, at time.Time) {
	r.ackedAt[r.index[partner]].Store(int64(at.Sub(r.start)))
	r.batch.Add(partner)
}

// cpuTime is the process's user + system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runCascades runs b.N cascades of the targets through the sender returned
// by newSender (one per cascade: cold connections) and reports the time to
// the last ack and to the flush of the last batch of acks, per-partner ack
// latency percentiles (from the cascade's start) and CPU time.
func runCascades(b *testing.B, cfg Config, targets []Target, newSender func() (Sender, func())) {
	index := make(map[string]int, len(targets))
	for i, t := range targets {
		index[t.Partner] = i
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	var lats []time.Duration
	var last, committed, cpu time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		sender, closeSender := newSender()
		d, err := NewDispatcher(cfg, sender)
		if err != nil {
			b.Fatal(err)
		}
		var flushed atomic.Int64
		allFlushed := make(chan struct{})
		batch, err := NewBatcher(512, 20*time.Millisecond, func(_ context.Context, acks []string) error {
			if flushed.Add(int64(len(acks))) == int64(len(targets)) {
				close(allFlushed)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		batchDone := make(chan error, 1)
		go func() { batchDone <- batch.Run(ctx) }()
		rec := &benchRecorder{index: index, ackedAt: make([]atomic.Int64, len(targets)), batch: batch}
		c := Cascade{ID: fmt.Sprint("bench-", i), Targets: targets,
			Notification: Notification{EventID: fmt.Sprint("evt-", i), Body: []byte(`{"organizationId":"org-revoked","reason":"benchmark"}`)}}
		b.StartTimer()

		cpu0 := cpuTime(b)
		rec.start = time.Now()
		c.Start = rec.start
		err = d.Run(ctx, c, rec)
		if err == nil {
			<-allFlushed // the last batch of acks "committed"
		}
		committed += time.Since(rec.start)
		cpu += cpuTime(b) - cpu0

		b.StopTimer()
		cancel()
		<-batchDone
		closeSender()
		if err != nil {
			b.Fatal(err)
		}
		var iterLast time.Duration
		for j := range rec.ackedAt {
			l := time.Duration(rec.ackedAt[j].Load())
			lats = append(lats, l)
			iterLast = max(iterLast, l)
		}
		last += iterLast
		b.StartTimer()
	}
	b.StopTimer()
	slices.Sort(lats)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pct := func(p float64) time.Duration { return lats[min(len(lats)-1, int(p*float64(len(lats))))] }
	b.ReportMetric(ms(last)/float64(b.N), "ms-to-last-ack")
	b.ReportMetric(ms(pct(0.50)), "p50-ack-ms")
	b.ReportMetric(ms(pct(0.99)), "p99-ack-ms")
	b.ReportMetric(ms(lats[len(lats)-1]), "max-ack-ms")
	b.ReportMetric(ms(committed)/float64(b.N), "ms-to-last-batch")
	b.ReportMetric(ms(cpu)/float64(b.N), "cpu-ms")
}

// loopbackCert is an ECDSA P-256 certificate for 127.0.0.1 from the
// project's CA, as member nodes have (httptest's RSA certificate would make
// the receivers' handshakes dominate), and a pool trusting it.
func loopbackCert(b *testing.B) (tls.Certificate, *x509.CertPool) {
	now := time.Now()
	ca, err := attestation.NewCA("bench CA", now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueNode("receiver", []string{"127.0.0.1"}, now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		b.Fatal("bench CA certificate not added")
	}
	return cert, pool
}

// BenchmarkCascadeLoopback notifies partners through real signed HTTPS
// webhooks to loopback receivers: a few TLS servers, each partner a path.
// The receivers run in this process, so cpu-ms counts both sides; each
// cascade starts with cold connections (TLS handshakes included).
func BenchmarkCascadeLoopback(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("partners=%d", n), func(b *testing.B) {
			const servers = 4
			_, priv := testKey(b)
			cert, pool := loopbackCert(b)
			var targets []Target
			var urls []string
			for range servers {
				srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					if r.Header.Get(HeaderSignature) == "" {
						w.WriteHeader(http.StatusBadRequest)
						return
					}
					w.WriteHeader(http.StatusNoContent)
				}))
				srv.Config.ErrorLog = log.New(io.Discard, "", 0)
				srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
				srv.StartTLS()
				b.Cleanup(srv.Close)
				urls = append(urls, srv.URL)
			}
			for i := range n {
				targets = append(targets, Target{Partner: fmt.Sprintf("org-%06d", i),
					Endpoints: []string{fmt.Sprintf("%s/hooks/org-%06d", urls[i%servers], i)}})
			}
			runCascades(b, Config{}, targets, func() (Sender, func()) {
				s, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "bench", TLS: &tls.Config{RootCAs: pool}})
				if err != nil {
					b.Fatal(err)
				}
				return s, s.Close
			})
		})
	}
}

// simulatedWAN is a Sender that answers after 50–500 ms, failing 5 % of the
// attempts transiently. It waits on a timer, so a waiting send is a parked
// goroutine, not a busy thread.
func simulatedWAN(ctx context.Context, _ Target, _ Notification) (Channel, error) {
	t := time.NewTimer(50*time.Millisecond + rand.N(450*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	if rand.N(100) < 5 {
		return ChannelWebhook, errors.New("simulated transient failure")
	}
	return ChannelWebhook, nil
}

// BenchmarkCascadeSimulated notifies 100,000 partners over a simulated WAN.
// With 275 ms mean latency, 100k sends need ~27,500 worker-seconds: 4096
// workers in flight finish in ~7 s (plus the retries' backoff tail).
func BenchmarkCascadeSimulated(b *testing.B) {
	b.Run("partners=100000", func(b *testing.B) {
		targets := make([]Target, 100000)
		for i := range targets {
			targets[i] = Target{Partner: fmt.Sprintf("org-%06d", i)}
		}
		runCascades(b, Config{Workers: 4096}, targets, func() (Sender, func()) {
			return SenderFunc(simulatedWAN), func() {}
		})
	})
}
