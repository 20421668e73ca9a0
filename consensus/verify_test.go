package consensus

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

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
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(stop)
		for i := int64(1); i <= 200; i++ {
			if _, err := leader.Apply(ctx, []byte(fmt.Sprintf("set counter %d", i))); err != nil {
				errs <- err
				return
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
						errs <- fmt.Errorf("%s: %w", n.id, err)
						return
					}
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
}
