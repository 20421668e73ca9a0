package state

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
)

// TestPruneRequestsSkipsTheReplacedRow: the clean-up of request ids runs
// before the request is recorded, and deletes what it deleted when it ran
// after: a request id reused once expired replaces its old row, which is
// neither deleted nor counted among the maxPrunePerApply rows.
func TestPruneRequestsSkipsTheReplacedRow(t *testing.T) {
	h := newHarness(t)
	for i := range 100 {
		h.now = t0.Add(time.Duration(i) * time.Millisecond)
		h.apply(&commandv1.UpdateOrganization{OrganizationId: "nobody", Name: "Nobody"}, fmt.Sprintf("req-%02d", i))
	}
	h.now = t0.Add(RequestTTL + time.Hour)
	res := h.apply(&commandv1.UpdateOrganization{OrganizationId: "nobody", Name: "Nobody"}, "req-05")
	require.False(t, res.Duplicate)
	var left []string
	for _, raw := range TableRows(h.fsm.Store(), tableRequests) {
		left = append(left, raw.(*commandv1.AppliedRequest).RequestId)
	}
	// Deleted: the 64 oldest but req-05, req-00..req-64 without it.
	want := []string{"req-05"}
	for i := 65; i < 100; i++ {
		want = append(want, fmt.Sprintf("req-%02d", i))
	}
	slices.Sort(want)
	require.Equal(t, want, left)
	r, err := h.read().txn.First(tableRequests, "id", "req-05")
	require.NoError(t, err)
	require.Equal(t, h.index, r.(*commandv1.AppliedRequest).Index)
}
