package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/registry/state"
)

// TestWatchStateHashMarksADrift: the periodic check keeps checking while
// the kept state hash is the full one (or the check itself fails), and
// marks the node diverged, at the view's index, once it differs.
func TestWatchStateHashMarksADrift(t *testing.T) {
	var calls atomic.Int32
	verify := func() (uint64, error) {
		switch n := calls.Add(1); {
		case n < 3:
			return uint64(n), nil
		case n == 3:
			return 3, fmt.Errorf("cannot read the view")
		default:
			return 42, fmt.Errorf("%w at index 42", state.ErrStateHashDrift)
		}
	}
	type mark struct {
		index  uint64
		reason string
	}
	marks := make(chan mark, 4)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(done)
		watchStateHash(ctx, time.Millisecond, verify, func(index uint64, reason string) { marks <- mark{index, reason} }, slog.New(slog.DiscardHandler))
	}()
	select {
	case m := <-marks:
		require.Equal(t, uint64(42), m.index)
		require.Contains(t, m.reason, "periodic full recomputation of the state hash")
	case <-time.After(10 * time.Second):
		t.Fatal("no divergence marked")
	}
	select {
	case <-done: // a drift ends the watch: the node is diverged
	case <-time.After(10 * time.Second):
		t.Fatal("the watch goes on after marking")
	}
	require.Equal(t, int32(4), calls.Load())
	require.Empty(t, marks)
}

// TestWatchStateHashStopsWithItsContext: the watch is owned by Run's
// context.
func TestWatchStateHashStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchStateHash(ctx, time.Hour, func() (uint64, error) { return 0, nil }, func(uint64, string) { t.Error("marked") }, slog.New(slog.DiscardHandler))
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch did not stop")
	}
}
