package revocation

import (
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// attemptRecord is one Recorder.Attempt call.
type attemptRecord struct {
	at      time.Time
	attempt int
	err     error
}

// fakeRecorder records a cascade's progress and lets tests wait on it.
type fakeRecorder struct {
	mu        sync.Mutex
	attempts  map[string][]attemptRecord
	acked     map[string][]Channel
	escalated map[string]int
	changed   chan struct{} // closed and replaced on every call
}

func newFakeRecorder() *fakeRecorder {
	return &fakeRecorder{
		attempts:  map[string][]attemptRecord{},
		acked:     map[string][]Channel{},
		escalated: map[string]int{},
		changed:   make(chan struct{}),
	}
}

func (r *fakeRecorder) notify() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *fakeRecorder) Attempt(partner string, at time.Time, attempt int, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[partner] = append(r.attempts[partner], attemptRecord{at: at, attempt: attempt, err: err})
	r.notify()
}

func (r *fakeRecorder) Acked(partner string, ch Channel, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.acked[partner] = append(r.acked[partner], ch)
	r.notify()
}

func (r *fakeRecorder) Escalate(partner string, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.escalated[partner]++
	r.notify()
}

// waitFor waits until cond, called with the recorder locked, is true: it
// wakes on every recorded call, and fails the test after timeout.
func (r *fakeRecorder) waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, changed := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("%s: not true after %s", what, timeout)
		}
	}
}

// tlsServer starts a loopback HTTPS server and returns it with a pool
// trusting it.
func tlsServer(t testing.TB, h http.Handler) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	srv := httptest.NewTLSServer(h)
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return srv, pool
}

// waitDone waits for a Run's result on done.
func waitDone(t testing.TB, done <-chan error, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(timeout):
		t.Fatalf("Run did not return within %s", timeout)
		return nil
	}
}

func mustDispatcher(t testing.TB, cfg Config, s Sender) *Dispatcher {
	t.Helper()
	d, err := NewDispatcher(cfg, s)
	require.NoError(t, err)
	return d
}
