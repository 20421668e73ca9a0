package system_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// On a healthy three-node cluster every node, follower or leader, reports
// itself ready (what its /readyz says); only the leader is leader-ready.
func TestStatusReadyOnHealthyFollowers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	leader := c.leader(t, "n1", "n2", "n3")
	for _, id := range []string{"n1", "n2", "n3"} {
		st, err := c.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		require.NoError(t, err, id)
		require.True(t, st.Ready, "%s (%s): not ready: %q", id, st.State, st.NotReady)
		require.Empty(t, st.NotReady, id)
		require.Equal(t, id == leader, st.LeaderReady, id)
	}
}
