package revocation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/registry/state"
)

// The sweeper's look scans every agreement on its first look of a term,
// then once every fullEvery (and when the clock went back); in between it
// reads the time indexes from where its last look found nothing due.
func TestSweepLookScansInFullOnlyFirstAndPeriodically(t *testing.T) {
	rd := state.NewStore().Read()
	var s sweepLook
	start := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const fullEvery = 5 * time.Minute
	require.Nil(t, s.next(rd, start, fullEvery))
	require.Equal(t, 1, s.fulls, "the first look of a term is a full scan")
	require.Equal(t, state.SweepMark{Time: start, Index: rd.Index()}, s.mark, "a look that finds nothing moves the mark")
	for i := 1; i < 300; i++ {
		at := start.Add(time.Duration(i) * time.Second)
		require.Nil(t, s.next(rd, at, fullEvery))
		require.Equal(t, at, s.mark.Time)
	}
	require.Equal(t, 1, s.fulls, "the looks in between read the indexes")
	require.Nil(t, s.next(rd, start.Add(fullEvery), fullEvery))
	require.Equal(t, 2, s.fulls, "a full scan every fullEvery")
	require.Nil(t, s.next(rd, start.Add(time.Minute), fullEvery))
	require.Equal(t, 3, s.fulls, "a clock that went back gets a full scan")
}
