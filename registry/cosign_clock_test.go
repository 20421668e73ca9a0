package registry

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/state"
)

// A replica refuses, as a whole, a decision batch whose leader-stamped time
// is off its own clock: otherwise a leader whose clock jumped would get its
// own decisions certified with decided_at as far off the real time.
func TestCosignerRefusesABatchStampedOffItsClock(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	c := NewCosigner("n2", "origin", nil, nil, nil)
	c.clock = func() time.Time { return now }
	for _, tc := range []struct {
		name  string
		at    time.Time
		wants string
	}{
		{"ahead", now.Add(30 * time.Second), "30s ahead of this node's clock"},
		{"behind", now.Add(-30 * time.Second), "30s behind this node's clock"},
		{"just ahead", now.Add(decision.MaxDecisionLead + time.Millisecond), "ahead of this node's clock"},
	} {
		res := c.evaluate(context.Background(), state.DecisionBatch{Index: 7, Time: tc.at})
		require.Nil(t, res.sig, tc.name)
		require.ErrorContains(t, res.err, tc.wants, tc.name)
		require.Nil(t, res.head, "%s: a node-local refusal signs no head (it is not a verdict on the decisions)", tc.name)
	}
	for _, at := range []time.Time{now, now.Add(decision.MaxDecisionLead), now.Add(-decision.MaxDecisionAge)} {
		require.NoError(t, c.checkBatchTime(state.DecisionBatch{Index: 7, Time: at}), "stamped %s", at.Sub(now))
	}
}
