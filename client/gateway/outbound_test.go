package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/gateway"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestStreamLossStopsTheCache: with the invalidation stream cut, a warm
// cache serves nothing (every Send goes to the registry, unreachable
// here) and inbound envelopes are refused as unconfirmed; once the stream
// resynchronises the gateway works again.
func TestStreamLossStopsTheCache(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	cap := newCapture()
	proxyA, proxyB := startProxy(t, f.dev.GRPCAddr()), startProxy(t, f.dev.GRPCAddr())
	a := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport, c.Registries = cap, []string{proxyA.addr()} })
	b := f.start(t, "bank-b", listen(t), nil, func(c *gateway.Config) { c.Transport, c.Registries = cap, []string{proxyB.addr()} })
	cap.deliverTo("bank-b", b.Gateway)

	send := func() error {
		_, err := a.Send(ctxT(t), "bank-b", "task_send", []byte("task"), gateway.SendOptions{})
		return err
	}
	require.NoError(t, send())
	require.NoError(t, send())
	st := a.Stats()
	require.Equal(t, uint64(1), st.RegistryChecks, "the second send is a cache hit")
	require.Equal(t, uint64(1), st.CacheHits)

	proxyA.cut()
	eventually(t, "bank-a notices its stream is gone", func() error {
		if a.Healthy() {
			return errNotYet
		}
		return nil
	})
	err := send()
	require.Equal(t, gateway.CodeRegistry, gateway.CodeOf(err), "the cache must not serve: %v", err)
	require.Equal(t, uint64(1), a.Stats().CacheHits)

	proxyB.cut()
	eventually(t, "bank-b notices its stream is gone", func() error {
		if b.Healthy() {
			return errNotYet
		}
		return nil
	})
	env := cap.last(t, "bank-b")
	requireRefused(t, b, env, gateway.CodeUnconfirmed)

	proxyA.restore()
	proxyB.restore()
	eventually(t, "both streams resynchronise", func() error {
		if !a.Healthy() || !b.Healthy() {
			return errNotYet
		}
		return nil
	})
	require.NoError(t, send(), "a fresh decision after the stream came back")
}

// TestDenyIsTypedWithReasons: an action outside the agreement is refused
// before anything is sealed, with the registry's reasons.
func TestDenyIsTypedWithReasons(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	cap := newCapture()
	a := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport = cap })
	_, err := a.Send(ctxT(t), "bank-b", "context_share", []byte("x"), gateway.SendOptions{})
	var r *gateway.RefusedError
	require.ErrorAs(t, err, &r)
	require.ErrorIs(t, err, gateway.ErrRefused)
	require.Equal(t, gateway.CodeDecisionDenied, r.Code)
	require.NotEmpty(t, r.Reasons)
	cap.mu.Lock()
	require.Empty(t, cap.sent["bank-b"], "nothing sealed or sent")
	cap.mu.Unlock()
}

// blockWord is a payload policy that blocks payloads containing "SSN".
type blockWord struct{}

func (blockWord) Outbound(_ context.Context, in gateway.PolicyInput) ([]byte, error) {
	if err := (blockWord{}).Inbound(context.Background(), in); err != nil {
		return nil, err
	}
	return in.Payload, nil
}

func (blockWord) Inbound(_ context.Context, in gateway.PolicyInput) error {
	if in.Controls == nil {
		return errors.New("no controls")
	}
	for i := 0; i+3 <= len(in.Payload); i++ {
		if string(in.Payload[i:i+3]) == "SSN" {
			return fmt.Errorf("SSN is BLOCK at level %d", in.Level)
		}
	}
	return nil
}

// TestControlsFailClosed: without a payload policy or gates every payload
// is refused both ways; a policy's refusal stops a message on either side.
func TestControlsFailClosed(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	cap := newCapture()
	bare := func(c *gateway.Config) { c.Transport, c.Policy, c.OutboundGate, c.InboundGate = cap, nil, nil, nil }
	a := f.start(t, "bank-a", listen(t), nil, bare)
	_, err := a.Send(ctxT(t), "bank-b", "task_send", []byte("x"), gateway.SendOptions{})
	require.Equal(t, gateway.CodeControls, gateway.CodeOf(err), "%v", err)
	require.ErrorIs(t, err, gateway.ErrNotConfigured)

	gated := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport, c.OutboundGate = cap, nil })
	_, err = gated.Send(ctxT(t), "bank-b", "task_send", []byte("x"), gateway.SendOptions{})
	require.Equal(t, gateway.CodeGate, gateway.CodeOf(err), "%v", err)

	// An envelope a permissive sender sealed is refused by a bare receiver
	// and by one whose policy blocks what it carries. (The receivers start
	// first: a gateway refuses decisions made before its stream synchronised.)
	receivers := []*testGateway{
		f.start(t, "bank-b", listen(t), nil, bare),
		f.start(t, "bank-b", listen(t), nil, func(c *gateway.Config) { c.Transport, c.Policy = cap, blockWord{} }),
		f.start(t, "bank-b", listen(t), nil, func(c *gateway.Config) { c.Transport, c.InboundGate = cap, nil }),
	}
	sender := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport = cap })
	_, err = sender.Send(ctxT(t), "bank-b", "task_send", []byte("my SSN"), gateway.SendOptions{})
	require.NoError(t, err)
	env := cap.last(t, "bank-b")
	requireRefused(t, receivers[0], env, gateway.CodeControls)
	requireRefused(t, receivers[1], env, gateway.CodeControls)
	requireRefused(t, receivers[2], env, gateway.CodeGate)

	blocking := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport, c.Policy = cap, blockWord{} })
	_, err = blocking.Send(ctxT(t), "bank-b", "task_send", []byte("my SSN"), gateway.SendOptions{})
	require.Equal(t, gateway.CodeControls, gateway.CodeOf(err), "%v", err)
}

// TestConcurrentMissesShareOneCheck: many concurrent sends of a cold
// interaction make one registry check.
func TestConcurrentMissesShareOneCheck(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	a := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport = newCapture() })
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			_, err := a.Decide(ctxT(t), "bank-b", "task_send", gateway.SendOptions{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, uint64(1), a.Stats().RegistryChecks, "one check for 32 concurrent misses")
}

// TestRevocationCutsSessions: a session the gateway opened ends when the
// partner is revoked, and its decisions stop being served.
func TestRevocationCutsSessions(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	cap := newCapture()
	a := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport = cap })
	s, err := a.OpenSession(ctxT(t), "bank-b", "task_send", time.Minute)
	require.NoError(t, err)
	opts := gateway.SendOptions{SessionID: s.ID()}
	_, err = a.Send(ctxT(t), "bank-b", "task_send", []byte("in session"), opts)
	require.NoError(t, err)
	st, err := a.Decide(ctxT(t), "bank-b", "task_send", opts)
	require.NoError(t, err)
	require.Equal(t, s.ID(), st.SessionId)

	f.revoke(t, "bank-b")
	select {
	case <-s.Ended():
	case <-ctxT(t).Done():
		t.Fatal("the session did not end")
	}
	require.Contains(t, s.Reason(), "REVOCATION")
	_, err = a.Send(ctxT(t), "bank-b", "task_send", []byte("after"), opts)
	require.Equal(t, gateway.CodeDecisionDenied, gateway.CodeOf(err), "%v", err)
	require.NoError(t, s.Close(ctxT(t), "done"))
}

// TestSessionOpenHeartbeatClose: a session is heartbeated while open and
// closed at the registry by Close.
func TestSessionOpenHeartbeatClose(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	a := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport = newCapture() })
	s, err := a.OpenSession(ctxT(t), "bank-b", "task_send", 3*time.Second)
	require.NoError(t, err)
	get := func() *trustfedv1.Session {
		resp, err := f.admin.Cascades().GetSession(ctxT(t), &trustfedv1.GetSessionRequest{SessionId: s.ID()})
		require.NoError(t, err)
		return resp.Session
	}
	first := get().ExpireTime.AsTime()
	eventually(t, "a heartbeat extends the session", func() error {
		if !get().ExpireTime.AsTime().After(first) {
			return errNotYet
		}
		return nil
	})
	require.NoError(t, s.Close(ctxT(t), "done"))
	require.Equal(t, trustfedv1.SessionStatus_SESSION_STATUS_CLOSED, get().Status)
}
