package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPairsAreDistinctAndCoverEveryOrganisation(t *testing.T) {
	for _, tc := range []struct{ orgs, n int }{{2, 1}, {3, 3}, {4, 6}, {5, 5}, {10, 45}, {10, 12}, {100, 1000}} {
		ps := pairs(tc.orgs, tc.n)
		require.Len(t, ps, tc.n, "%+v", tc)
		seen := map[[2]int]bool{}
		for _, p := range ps {
			require.NotEqual(t, p[0], p[1], "%+v: no organisation agrees with itself", tc)
			key := [2]int{min(p[0], p[1]), max(p[0], p[1])}
			require.False(t, seen[key], "%+v: %v twice", tc, key)
			seen[key] = true
		}
		if tc.n >= tc.orgs {
			partners := map[int]bool{}
			for _, p := range ps {
				partners[p[0]], partners[p[1]] = true, true
			}
			require.Len(t, partners, tc.orgs, "%+v: every organisation has a partner", tc)
		}
	}
}

func TestQuantiles(t *testing.T) {
	var lat []time.Duration
	for i := 1000; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	q := quantiles(lat)
	require.Equal(t, Latencies{P50: 501, P90: 901, P99: 991, P999: 1000, Max: 1000}, q)
	require.Equal(t, Latencies{}, quantiles(nil))
}

func TestLoadValidateNamesTheFlag(t *testing.T) {
	ok := Load{Mode: ModeChecks, Consistency: 1, Callers: 4, Conns: 2, Duration: time.Second, Orgs: 2, Agreements: 1}
	require.NoError(t, ok.Validate())
	for field, mutate := range map[string]func(*Load){
		"mode":            func(l *Load) { l.Mode = "reads" },
		"consistency":     func(l *Load) { l.Consistency = 0 },
		"callers":         func(l *Load) { l.Callers = 0 },
		"conns":           func(l *Load) { l.Conns = 5 },
		"duration":        func(l *Load) { l.Duration = 0 },
		"orgs":            func(l *Load) { l.Orgs = 1 },
		"agreements":      func(l *Load) { l.Agreements = 2 },
		"member-nodes":    func(l *Load) { l.MemberNodes = -1 },
		"preload-workers": func(l *Load) { l.PreloadWorkers = -1 },
		"preload-import":  func(l *Load) { l.PreloadImport = 1001 },
	} {
		l := ok
		mutate(&l)
		require.ErrorContains(t, l.Validate(), field+":", field)
	}
}
