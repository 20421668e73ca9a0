package revocation

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startBatcher runs a Batcher whose flushes arrive on the returned channel.
func startBatcher(t *testing.T, size int, interval time.Duration) (*Batcher[int], <-chan []int, <-chan error, context.CancelFunc) {
	t.Helper()
	flushed := make(chan []int, 1000)
	b, err := NewBatcher(size, interval, func(ctx context.Context, items []int) error {
		select {
		case flushed <- items:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(stopped)
		done <- b.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return b, flushed, done, cancel
}

func nextFlush(t *testing.T, flushed <-chan []int) []int {
	t.Helper()
	select {
	case items := <-flushed:
		return items
	case <-time.After(5 * time.Second):
		t.Fatal("no flush within 5s")
		return nil
	}
}

func TestBatcherFlushesFullBatches(t *testing.T) {
	b, flushed, _, _ := startBatcher(t, 3, time.Hour) // only a full batch flushes
	b.Add(1, 2, 3)
	require.Equal(t, []int{1, 2, 3}, nextFlush(t, flushed))
	b.Add(4)
	b.Add(5)
	b.Add(6)
	require.Equal(t, []int{4, 5, 6}, nextFlush(t, flushed), "4 and 5 waited for a full batch")
	b.Add(7, 8, 9, 10, 11, 12, 13)
	require.Equal(t, []int{7, 8, 9}, nextFlush(t, flushed))
	require.Equal(t, []int{10, 11, 12}, nextFlush(t, flushed))
	require.Equal(t, []int{13}, nextFlush(t, flushed), "taken with the rest, in chunks of at most the size")
}

func TestBatcherFlushesAfterInterval(t *testing.T) {
	b, flushed, _, _ := startBatcher(t, 100, 10*time.Millisecond)
	b.Add(1)
	b.Add(2)
	got := nextFlush(t, flushed)
	if len(got) == 1 { // the interval may pass between the two Adds
		got = append(got, nextFlush(t, flushed)...)
	}
	require.Equal(t, []int{1, 2}, got)
	b.Add(3)
	require.Equal(t, []int{3}, nextFlush(t, flushed))
}

func TestBatcherConcurrentAdds(t *testing.T) {
	const goroutines, each, size = 8, 1000, 64
	b, flushed, _, _ := startBatcher(t, size, 5*time.Millisecond)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				b.Add(g*each + i)
			}
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for len(seen) < goroutines*each {
		batch := nextFlush(t, flushed)
		require.LessOrEqual(t, len(batch), size)
		for _, v := range batch {
			require.False(t, seen[v], "item %d flushed twice", v)
			seen[v] = true
		}
	}
}

func TestBatcherStops(t *testing.T) {
	b, flushed, done, cancel := startBatcher(t, 10, time.Hour)
	b.Add(1)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	require.Empty(t, flushed, "pending items are dropped, not flushed with a dead context")

	boom := errors.New("not the leader")
	fb, err := NewBatcher(1, time.Hour, func(context.Context, []string) error { return boom })
	require.NoError(t, err)
	fb.Add("ack")
	require.ErrorIs(t, fb.Run(t.Context()), boom)
}

func TestNewBatcherRefuses(t *testing.T) {
	flush := func(context.Context, []int) error { return nil }
	_, err := NewBatcher(0, time.Second, flush)
	require.Error(t, err)
	_, err = NewBatcher(1, 0, flush)
	require.Error(t, err)
	_, err = NewBatcher[int](1, time.Second, nil)
	require.Error(t, err)
}
