package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A follower that refuses appends for a while (its disk full) gets entries
// again as soon as it can store them, round after round: raft's pipeline
// to it does not stall (pipeline.go). Without the guard, a round in which
// the leader sent twice more after the refusal left the follower without
// entries until the next election, which its healthy heartbeats prevent.
func TestFollowerGetsEntriesAgainAfterRefusingAppends(t *testing.T) {
	c := newCluster(t)
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	leader := waitLeader(t, nodes...)
	follower := followers(leader, nodes...)[0]

	// A steady stream of writes keeps the pipeline busy (and its sender
	// with a trigger ready whenever the refusal comes back).
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				actx, acancel := context.WithTimeout(ctx, time.Second)
				_, _ = leader.Apply(actx, fmt.Appendf(nil, "set w%d-%d=x", w, i))
				acancel()
			}
		}()
	}

	full := errors.New("write raft.db: no space left on device")
	caughtUp := func(what string) {
		t.Helper()
		target := leader.AppliedIndex() + 20
		deadline := time.Now().Add(5 * time.Second)
		for follower.AppliedIndex() < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the follower applied %d after 5 s, the leader %d (wanted %d)", what, follower.AppliedIndex(), leader.AppliedIndex(), target)
			}
			time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
		}
	}
	for round := range 40 {
		caughtUp(fmt.Sprintf("round %d, before the fault", round))
		follower.store.failAppends.Store(&full)
		require.Eventually(t, func() bool { return follower.StorageFault() != nil }, 5*time.Second, time.Millisecond,
			"round %d: the follower never refused an append", round)
		at := leader.AppliedIndex()
		require.Eventually(t, func() bool { return leader.AppliedIndex() >= at+20 }, 5*time.Second, time.Millisecond,
			"round %d: the leader stopped committing without the follower", round)
		follower.store.failAppends.Store(nil)
		caughtUp(fmt.Sprintf("round %d, after the fault", round))
		require.NoError(t, follower.StorageFault(), "round %d: an append succeeded and cleared the fault", round)
	}
}
