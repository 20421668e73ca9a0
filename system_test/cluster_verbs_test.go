package system_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestClusterVerbs drives `trustfed cluster members`, `transfer-leader`
// and `remove-peer` against a real three-server cluster, each through a
// follower: the leadership moves to the named voter, the removed server
// leaves the configuration.
func TestClusterVerbs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	var followers []string
	for _, id := range all {
		if id != leader {
			followers = append(followers, id)
		}
	}

	var members struct {
		Members []struct {
			NodeID   string `json:"nodeId"`
			Suffrage string `json:"suffrage"`
			Leader   bool   `json:"leader"`
		} `json:"members"`
	}
	out := c.cli(t, followers[0], false, "cluster", "members", "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &members), out)
	require.Len(t, members.Members, 3)
	for _, m := range members.Members {
		require.Equal(t, "SUFFRAGE_VOTER", m.Suffrage, m.NodeID)
		require.Equal(t, m.NodeID == leader, m.Leader, m.NodeID)
	}
	require.Contains(t, c.cli(t, followers[0], false, "cluster", "members"), "RAFT ADDRESS")

	// Transfer to followers[1], asked through followers[0] (forwarded).
	target := followers[1]
	out = c.cli(t, followers[0], false, "cluster", "transfer-leader", target)
	require.Contains(t, out, "Leadership transferred")
	require.Equal(t, target, c.leader(t, all...))
	require.Contains(t, c.cli(t, target, true, "cluster", "transfer-leader", "nope"), "not a member")

	// Remove the old leader, through the new leader's follower.
	out = c.cli(t, followers[0], false, "cluster", "remove-peer", leader)
	require.Contains(t, out, "Removed "+leader)
	require.Contains(t, out, "is still valid: revoke it (trustfed key revoke "+leader, "the CLI names the removed server's key that still counts towards a decision's quorum")
	testutil.Eventually(t, 30*time.Second, "2 members left", func() error {
		st, err := c.clients[target].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		if len(st.Members) != 2 {
			return fmt.Errorf("%d members", len(st.Members))
		}
		for _, m := range st.Members {
			if m.NodeId == leader {
				return fmt.Errorf("%s still a member", leader)
			}
		}
		return nil
	})
}
