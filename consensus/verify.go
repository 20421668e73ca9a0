package consensus

import (
	"sync"
)

// coalescer shares one round of an expensive check among concurrent
// callers. Callers join the next round that has not started yet; a round
// starts only when it is taken from `next`, which is after every caller
// that joined it arrived. So a caller always gets the result of a round that
// began after its call — the guarantee a read index needs — while one round
// serves many callers.
//
// Two are used: on the leader, one VerifyLeader (a heartbeat to a quorum)
// for all concurrent ReadIndex calls; on a follower, one ReadIndex RPC to
// the leader for all concurrent linearizable reads.
type coalescer struct {
	mu      sync.Mutex
	next    *round
	running bool // a goroutine is running rounds (it exits when none wait)
}

type round struct {
	done  chan struct{}
	index uint64
	err   error
}

// do joins the next round of fn and waits for it. fn must return once the
// node closes (so the round goroutine, owned by the coalescer, ends).
func (c *coalescer) do(done <-chan struct{}, fn func() (uint64, error)) (uint64, error) {
	c.mu.Lock()
	if c.next == nil {
		c.next = &round{done: make(chan struct{})}
	}
	r := c.next
	if !c.running {
		c.running = true
		go c.run(fn)
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-done:
		return 0, errCallerGone
	}
}

func (c *coalescer) run(fn func() (uint64, error)) {
	for {
		c.mu.Lock()
		r := c.next
		c.next = nil
		if r == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		r.index, r.err = fn()
		close(r.done)
	}
}
