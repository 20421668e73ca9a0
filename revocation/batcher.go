package revocation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Batcher groups items (for instance a cascade's acks) so that they are
// committed many per Raft command: Run flushes the pending items once Size
// of them are waiting, or Interval after the first of them arrived,
// whichever comes first, in chunks of at most Size.
//
// Add never blocks. Items still pending when Run's context ends, or in a
// flush that fails, are dropped: for acks that means the next leader
// notifies those partners again, which receivers de-duplicate by event id.
type Batcher[T any] struct {
	size     int
	interval time.Duration
	flush    func(context.Context, []T) error

	mu      sync.Mutex
	pending []T
	signal  chan struct{} // cap 1: the first item arrived, or Size are waiting
}

// NewBatcher returns a Batcher flushing through flush, which Run calls from
// its own goroutine, one batch at a time.
func NewBatcher[T any](size int, interval time.Duration, flush func(context.Context, []T) error) (*Batcher[T], error) {
	switch {
	case size < 1:
		return nil, fmt.Errorf("new batcher: size %d < 1", size)
	case interval <= 0:
		return nil, fmt.Errorf("new batcher: interval %s <= 0", interval)
	case flush == nil:
		return nil, errors.New("new batcher: nil flush")
	}
	return &Batcher[T]{size: size, interval: interval, flush: flush, signal: make(chan struct{}, 1)}, nil
}

// Add queues items for the next flush. It is safe for concurrent use.
func (b *Batcher[T]) Add(items ...T) {
	if len(items) == 0 {
		return
	}
	b.mu.Lock()
	before := len(b.pending)
	b.pending = append(b.pending, items...)
	wake := before == 0 || before < b.size && len(b.pending) >= b.size
	b.mu.Unlock()
	if wake {
		select {
		case b.signal <- struct{}{}:
		default: // Run has a wake-up pending already
		}
	}
}

// full reports whether a batch is complete.
func (b *Batcher[T]) full() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending) >= b.size
}

// take removes and returns the pending items.
func (b *Batcher[T]) take() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := b.pending
	b.pending = nil
	return out
}

// Run flushes batches until ctx is done (it then returns nil) or a flush
// fails for another reason (it returns that error).
func (b *Batcher[T]) Run(ctx context.Context) error {
	timer := time.NewTimer(b.interval)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-b.signal:
		}
		// Something is pending: wait for a full batch or the interval.
		timer.Reset(b.interval)
	wait:
		for !b.full() {
			select {
			case <-ctx.Done():
				return nil
			case <-timer.C:
				break wait
			case <-b.signal:
			}
		}
		timer.Stop()
		items := b.take()
		for len(items) > 0 {
			n := min(len(items), b.size)
			if err := b.flush(ctx, items[:n]); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("batcher: flush of %d items: %w", n, err)
			}
			items = items[n:]
		}
	}
}
