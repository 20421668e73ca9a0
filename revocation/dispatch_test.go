package revocation

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
)

// fastConfig is a Config with millisecond backoffs.
func fastConfig() Config {
	return Config{
		Workers:     16,
		BaseBackoff: time.Millisecond,
		MaxBackoff:  5 * time.Millisecond,
		Rand:        rand.New(rand.NewPCG(1, 2)),
	}
}

func TestDispatchWebhooks(t *testing.T) {
	pub, priv := testKey(t)
	const partners = 50
	body := []byte(`{"revoked":"org-x"}`)
	var (
		mu       sync.Mutex
		received = map[string][]string{} // path -> verified event ids
	)
	dedup := NewDeduper(100)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /p/{id}", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, err := VerifyWebhook(pub, r.Header, b, time.Now(), time.Minute)
		if err != nil || string(b) != string(body) || r.Header.Get(HeaderKeyID) != "reg-key-1" ||
			r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, fmt.Sprint("bad notification: ", err), http.StatusBadRequest)
			return
		}
		dedup.Seen(id)
		mu.Lock()
		received[r.URL.Path] = append(received[r.URL.Path], id)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /down/{id}", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	})
	srv, pool := tlsServer(t, mux)
	sender, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "reg-key-1", TLS: &tls.Config{RootCAs: pool}})
	require.NoError(t, err)
	defer sender.Close()

	c := Cascade{ID: "cascade-1", Start: time.Now(),
		Notification: Notification{EventID: "evt-revoke-1", Body: body, ContentType: "application/json"}}
	for i := range partners {
		t := Target{Partner: fmt.Sprintf("org-%02d", i), Endpoints: []string{fmt.Sprintf("%s/p/%d", srv.URL, i)}}
		if i%10 == 0 { // a dead first endpoint: the second one acknowledges
			t.Endpoints = append([]string{fmt.Sprintf("%s/down/%d", srv.URL, i)}, t.Endpoints...)
		}
		c.Targets = append(c.Targets, t)
	}
	rec := newFakeRecorder()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	require.NoError(t, mustDispatcher(t, fastConfig(), sender).Run(ctx, c, rec))

	for i, tg := range c.Targets {
		require.Equal(t, []string{"evt-revoke-1"}, received[fmt.Sprintf("/p/%d", i)], tg.Partner)
		require.Equal(t, []Channel{ChannelWebhook}, rec.acked[tg.Partner], tg.Partner)
		require.Len(t, rec.attempts[tg.Partner], 1, tg.Partner)
		require.Equal(t, 1, rec.attempts[tg.Partner][0].attempt)
		require.NoError(t, rec.attempts[tg.Partner][0].err)
	}
	require.True(t, dedup.Seen("evt-revoke-1"), "a redelivery is recognised")
}

func TestTC2DispatchRetriesUntilUp(t *testing.T) {
	_, priv := testKey(t)
	const downFor = 3
	var hits atomic.Int64
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if hits.Add(1) <= downFor {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	sender, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "k", TLS: &tls.Config{RootCAs: pool}})
	require.NoError(t, err)
	defer sender.Close()
	c := Cascade{ID: "c", Notification: Notification{EventID: "e"}, Targets: []Target{{Partner: "flaky", Endpoints: []string{srv.URL}}}}
	rec := newFakeRecorder()
	require.NoError(t, mustDispatcher(t, fastConfig(), sender).Run(t.Context(), c, rec))

	got := rec.attempts["flaky"]
	require.Len(t, got, downFor+1)
	for i, a := range got {
		require.Equal(t, i+1, a.attempt)
		if i < downFor {
			require.ErrorIs(t, a.err, ErrNotAcknowledged)
		} else {
			require.NoError(t, a.err)
		}
	}
	require.Equal(t, []Channel{ChannelWebhook}, rec.acked["flaky"])
}

func TestTC2DispatchEscalatesOnceKeepsRetryingAndStops(t *testing.T) {
	before := runtime.NumGoroutine()
	_, priv := testKey(t)
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gone" {
			http.Error(w, "gone for good", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	sender, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "k", TLS: &tls.Config{RootCAs: pool}})
	require.NoError(t, err)

	cfg := fastConfig()
	cfg.BaseBackoff, cfg.MaxBackoff = 2*time.Millisecond, 20*time.Millisecond
	cfg.Deadline = 300 * time.Millisecond // escalation at 240 ms
	start := time.Now()
	c := Cascade{ID: "c", Start: start, Notification: Notification{EventID: "e"}, Targets: []Target{
		{Partner: "gone", Endpoints: []string{srv.URL + "/gone"}},
		{Partner: "fine", Endpoints: []string{srv.URL + "/fine"}},
	}}
	rec := newFakeRecorder()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	d := mustDispatcher(t, cfg, sender)
	go func() { done <- d.Run(ctx, c, rec) }()

	rec.waitFor(t, 10*time.Second, "escalation of the unacknowledged partner", func() bool { return rec.escalated["gone"] == 1 })
	require.GreaterOrEqual(t, time.Since(start), 240*time.Millisecond, "not escalated before 0.8 × deadline")
	rec.waitFor(t, 10*time.Second, "retries past the deadline", func() bool {
		a := rec.attempts["gone"]
		return len(a) > 0 && a[len(a)-1].at.After(start.Add(cfg.Deadline))
	})
	cancel()
	require.ErrorIs(t, waitDone(t, done, 5*time.Second), context.Canceled)

	rec.mu.Lock()
	require.Equal(t, map[string]int{"gone": 1}, rec.escalated, "escalated exactly once, and only the unacknowledged")
	require.Equal(t, []Channel{ChannelWebhook}, rec.acked["fine"])
	require.Empty(t, rec.acked["gone"])
	rec.mu.Unlock()

	sender.Close()
	srv.Close()
	testutil.Eventually(t, 5*time.Second, "goroutines of the cascade stopped", func() error {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Errorf("%d goroutines, %d before", n, before)
		}
		return nil
	})
}

func TestTC2DispatchResumeSkipsAcked(t *testing.T) {
	release := make(chan struct{})
	var (
		mu   sync.Mutex
		sent = map[string]int{}
	)
	sender := SenderFunc(func(ctx context.Context, tg Target, _ Notification) (Channel, error) {
		mu.Lock()
		sent[tg.Partner]++
		mu.Unlock()
		select {
		case <-release:
			return ChannelStream, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
	c := Cascade{ID: "c", Start: time.Now().Add(-time.Hour), // escalation point long past
		Notification: Notification{EventID: "e"}, Progress: map[string]Progress{}}
	for i := range 10 {
		c.Targets = append(c.Targets, Target{Partner: fmt.Sprintf("p%d", i)})
		if i < 5 {
			c.Progress[fmt.Sprintf("p%d", i)] = Progress{Attempts: 1, Acked: true}
		}
	}
	c.Progress["p5"] = Progress{Attempts: 3, Escalated: true}
	rec := newFakeRecorder()
	done := make(chan error, 1)
	d := mustDispatcher(t, fastConfig(), sender)
	go func() { done <- d.Run(t.Context(), c, rec) }()

	rec.waitFor(t, 10*time.Second, "escalation of the partners not yet escalated", func() bool { return len(rec.escalated) == 4 })
	close(release)
	require.NoError(t, waitDone(t, done, 10*time.Second))

	require.Equal(t, map[string]int{"p5": 1, "p6": 1, "p7": 1, "p8": 1, "p9": 1}, sent, "acknowledged partners are not notified again")
	require.Equal(t, map[string]int{"p6": 1, "p7": 1, "p8": 1, "p9": 1}, rec.escalated)
	require.Equal(t, 4, rec.attempts["p5"][0].attempt, "attempts continue the earlier count")
	require.Equal(t, []Channel{ChannelStream}, rec.acked["p5"])

	// Nothing left to do: Run returns at once.
	for _, tg := range c.Targets {
		c.Progress[tg.Partner] = Progress{Acked: true}
	}
	require.NoError(t, mustDispatcher(t, fastConfig(), SenderFunc(func(context.Context, Target, Notification) (Channel, error) {
		t.Error("sent to an acknowledged partner")
		return "", nil
	})).Run(t.Context(), c, rec))
}

func TestScenarioBDispatchRunsInParallel(t *testing.T) {
	for _, tc := range []struct{ workers, targets, want int }{
		{workers: 8, targets: 40, want: 8},
		{workers: 64, targets: 20, want: 20},
	} {
		t.Run(fmt.Sprintf("workers=%d/targets=%d", tc.workers, tc.targets), func(t *testing.T) {
			var (
				inFlight, peak atomic.Int64
				once           sync.Once
				full           = make(chan struct{})
			)
			sender := SenderFunc(func(ctx context.Context, _ Target, _ Notification) (Channel, error) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				if n >= int64(tc.want) {
					once.Do(func() { close(full) })
				}
				select { // every call waits until want calls were in flight at once
				case <-full:
					return ChannelWebhook, nil
				case <-ctx.Done():
					return "", ctx.Err()
				}
			})
			c := Cascade{ID: "c", Notification: Notification{EventID: "e"}}
			for i := range tc.targets {
				c.Targets = append(c.Targets, Target{Partner: fmt.Sprint(i)})
			}
			cfg := fastConfig()
			cfg.Workers = tc.workers
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			require.NoError(t, mustDispatcher(t, cfg, sender).Run(ctx, c, newFakeRecorder()),
				"the sends did not reach %d in flight at once", tc.want)
			require.EqualValues(t, tc.want, peak.Load(), "never more in flight than the workers")
		})
	}
}

func TestDispatchManyWithTransientFailures(t *testing.T) {
	const partners = 5000
	failures := map[string]int64{} // partner -> failures before its ack
	c := Cascade{ID: "c", Notification: Notification{EventID: "e"}}
	for i := range partners {
		p := fmt.Sprint("p", i)
		failures[p] = int64(i % 3)
		c.Targets = append(c.Targets, Target{Partner: p})
	}
	var calls sync.Map // partner -> *atomic.Int64
	sender := SenderFunc(func(_ context.Context, tg Target, _ Notification) (Channel, error) {
		v, _ := calls.LoadOrStore(tg.Partner, new(atomic.Int64))
		if v.(*atomic.Int64).Add(1) <= failures[tg.Partner] {
			return ChannelWebhook, errors.New("transient")
		}
		return ChannelWebhook, nil
	})
	rec := newFakeRecorder()
	require.NoError(t, mustDispatcher(t, fastConfig(), sender).Run(t.Context(), c, rec))
	require.Len(t, rec.acked, partners)
	for _, tg := range c.Targets {
		require.Len(t, rec.acked[tg.Partner], 1)
		require.Len(t, rec.attempts[tg.Partner], int(failures[tg.Partner])+1)
	}
}

func TestBackoff(t *testing.T) {
	d := mustDispatcher(t, Config{BaseBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		Rand: rand.New(rand.NewPCG(3, 4))}, SenderFunc(nil))
	for _, tc := range []struct {
		failures     int
		pastDeadline bool
		ceiling      time.Duration
	}{
		{1, false, 100 * time.Millisecond},
		{2, false, 200 * time.Millisecond},
		{4, false, 800 * time.Millisecond},
		{5, false, time.Second},
		{500, false, time.Second},
		{1, true, time.Second},
	} {
		var top time.Duration
		for range 1000 {
			b := d.backoff(tc.failures, tc.pastDeadline)
			require.GreaterOrEqual(t, b, time.Duration(0))
			require.LessOrEqual(t, b, tc.ceiling)
			top = max(top, b)
		}
		require.Greater(t, top, tc.ceiling*9/10, "full jitter reaches near the ceiling (%+v)", tc)
	}
}

func TestDispatcherRefuses(t *testing.T) {
	ok := SenderFunc(func(context.Context, Target, Notification) (Channel, error) { return ChannelWebhook, nil })
	_, err := NewDispatcher(Config{}, nil)
	require.Error(t, err)
	_, err = NewDispatcher(Config{EscalateAt: 1.5}, ok)
	require.Error(t, err)
	_, err = NewDispatcher(Config{Workers: -1}, ok)
	require.Error(t, err)

	d := mustDispatcher(t, Config{}, ok)
	for name, c := range map[string]Cascade{
		"bad event id":      {Notification: Notification{EventID: "a b"}, Targets: []Target{{Partner: "p"}}},
		"empty partner":     {Notification: Notification{EventID: "e"}, Targets: []Target{{Partner: ""}}},
		"duplicate partner": {Notification: Notification{EventID: "e"}, Targets: []Target{{Partner: "p"}, {Partner: "p"}}},
	} {
		require.ErrorIs(t, d.Run(t.Context(), c, newFakeRecorder()), ErrInvalidCascade, name)
	}
}
