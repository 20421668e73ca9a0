package revocation

import (
	"container/heap"
	"time"
)

// scheduler holds, for one Run, the targets ready for an attempt (a FIFO)
// and those waiting for their retry (a min-heap on the due time behind a
// single timer). It belongs to Run's goroutine: workers never wait on it,
// and a retry waiting its backoff holds no worker.
type scheduler struct {
	ready []int // FIFO: ready[head:] are due now
	head  int
	later retryHeap
	timer *time.Timer
	armed time.Time // due time the timer is set for; zero when idle
}

// retryAt is a target waiting for its retry.
type retryAt struct {
	due time.Time
	idx int
}

type retryHeap []retryAt

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retryAt)) }
func (h *retryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// peek returns the next ready target.
func (s *scheduler) peek() (int, bool) {
	if s.head == len(s.ready) {
		return 0, false
	}
	return s.ready[s.head], true
}

// pop removes the next ready target.
func (s *scheduler) pop() {
	s.head++
	if s.head == len(s.ready) { // reuse the backing array
		s.ready, s.head = s.ready[:0], 0
	}
}

// retry makes idx ready again at due.
func (s *scheduler) retry(idx int, due time.Time) {
	heap.Push(&s.later, retryAt{due: due, idx: idx})
	s.arm()
}

// due moves the retries due at now to the ready queue and re-arms the timer.
func (s *scheduler) due(now time.Time) {
	s.armed = time.Time{}
	for len(s.later) > 0 && !s.later[0].due.After(now) {
		s.ready = append(s.ready, heap.Pop(&s.later).(retryAt).idx)
	}
	s.arm()
}

// arm sets the timer for the earliest retry, if it is not set for it yet.
func (s *scheduler) arm() {
	if len(s.later) == 0 {
		return
	}
	next := s.later[0].due
	if !s.armed.IsZero() && !next.Before(s.armed) {
		return
	}
	s.armed = next
	d := time.Until(next)
	if s.timer == nil {
		s.timer = time.NewTimer(d)
		return
	}
	s.timer.Reset(d)
}

// timerC is the channel of the retry timer; nil (never ready) while no
// retry waits.
func (s *scheduler) timerC() <-chan time.Time {
	if s.armed.IsZero() {
		return nil
	}
	return s.timer.C
}

// stop releases the timer.
func (s *scheduler) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
}
