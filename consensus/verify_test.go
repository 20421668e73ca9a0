package consensus

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Concurrent linearizable reads share leadership rounds and still see every
// write acknowledged before they began: a writer bumps a counter on the
// leader while readers on every node check that a read started after an
// acknowledged write sees at least that write.
func TestConcurrentReadsAreLinearizable(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	leader := waitLeader(t, nodes...)
	ctx := ctxT(t)

	var acked atomic.Int64 // highest counter value acknowledged to the writer
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	var reads, failed atomic.Int64 // linearizable reads answered, and refused
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		// A leader that loses its lease on a loaded machine is not a
		// violation: the write is retried on the next ready leader ("set"
		// is idempotent, so an unknown outcome applied twice is harmless).
		deadline := time.Now().Add(waitTimeout)
		for i := int64(1); i <= 200; i++ {
			for {
				_, err := leader.Apply(ctx, []byte(fmt.Sprintf("set counter %d", i)))
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
				if l := readyLeader(nodes); l != nil {
					leader = l
				}
				<-time.After(10 * time.Millisecond) // poll for the next leader, as require.Eventually does

			}
			acked.Store(i)
		}
	}()
	for _, n := range nodes {
		for r := 0; r < 8; r++ {
			wg.Add(1)
			go func(n *testNode) {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					before := acked.Load()
					if _, err := n.LinearizableRead(ctx); err != nil {
						// Unavailable while leadership moves: not an
						// answer, so nothing to check.
						failed.Add(1)
						<-time.After(10 * time.Millisecond)
						continue
					}
					reads.Add(1)
					got, _ := strconv.ParseInt(n.kv.get("counter"), 10, 64)
					if got < before {
						errs <- fmt.Errorf("%s read counter %d after write %d was acknowledged", n.id, got, before)
						return
					}
				}
			}(n)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 200, acked.Load())
	require.Positive(t, reads.Load(), "no linearizable read succeeded (%d failed)", failed.Load())
}

// readyLeader returns the ready leader among nodes, or nil while there is none.
func readyLeader(nodes []*testNode) *testNode {
	for _, n := range nodes {
		if n.IsLeader() {
			return n
		}
	}
	return nil
}

// A follower can apply a committed entry before the leader's own state
// machine does (the leader hands entries to its FSM goroutine, which may
// lag). A read index must then still cover the entry: a read elsewhere may
// already have returned it, and a later read must not go back in time.
func TestReadIndexCoversEntriesAFollowerApplied(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	leader := waitLeader(t, nodes...)
	follower := followers(leader, nodes...)[0]
	apply(t, "set k before", nodes...)

	// Hold the leader's state machine: its FSM goroutine blocks on Apply.
	leader.kv.mu.Lock()
	released := false
	release := func() {
		if !released {
			released = true
			leader.kv.mu.Unlock()
		}
	}
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := leader.Apply(context.Background(), []byte("set k after"))
		done <- err
	}()
	require.Eventually(t, func() bool { return follower.kv.get("k") == "after" }, waitTimeout, 5*time.Millisecond,
		"the follower applies the entry")
	follower.kv.mu.Lock()
	applied := follower.kv.last
	follower.kv.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	idx, err := leader.ReadIndex(ctx)
	cancel()
	if err == nil {
		require.GreaterOrEqual(t, idx, applied, "read index %d below entry %d a follower already applied", idx, applied)
	}
	release()
	require.NoError(t, <-done)
	idx, err = leader.ReadIndex(ctxT(t))
	require.NoError(t, err)
	require.GreaterOrEqual(t, idx, applied)
}
