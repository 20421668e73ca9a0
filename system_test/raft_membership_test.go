package system_test

import (
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// requireSoleLeader waits until c's node is the ready leader of a cluster
// whose only voter it is, with members members in all.
func requireSoleLeader(t *testing.T, c *client.Client, members int) *trustfedv1.StatusResponse {
	t.Helper()
	var st *trustfedv1.StatusResponse
	testutil.Eventually(t, 30*time.Second, "the node is the ready leader", func() error {
		var err error
		if st, err = c.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{}); err != nil {
			return err
		}
		if !st.Ready || st.State != "Leader" {
			return fmt.Errorf("state %s, ready %v", st.State, st.Ready)
		}
		return nil
	})
	require.Len(t, st.Members, members)
	require.Equal(t, 1, countVoters(st), "members: %v", st.Members)
	return st
}

// closedAddr is a loopback address nothing listens on (a port that was free a moment ago).
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// The adversarial run's reproduction: one REST join with a bad address must
// not cost a one-node cluster its leader, and neither may a well-formed
// address nothing answers at.
func TestJoinCannotTakeTheLeaderDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d, admin, fed := startFederation(t)

	t.Run("an address out of range is refused, naming the field", func(t *testing.T) {
		for _, tc := range []struct{ raft, api, field string }{
			{"127.0.0.1:99999", "127.0.0.1:7443", "raft_address"},
			{"127.0.0.1:0", "127.0.0.1:7443", "raft_address"},
			{":7000", "127.0.0.1:7443", "raft_address"},
			{"https://127.0.0.1:7000", "127.0.0.1:7443", "raft_address"},
			{"127.0.0.1:7000/raft", "127.0.0.1:7443", "raft_address"},
			{"127.0.0.1:7000", "127.0.0.1:65536", "api_address"},
			{"127.0.0.1:7000", "127.0.0.1", "api_address"},
		} {
			code, body := d.do(t, "POST", "/v1/cluster/members", d.token,
				map[string]any{"node_id": "n2", "raft_address": tc.raft, "api_address": tc.api})
			require.Equal(t, http.StatusBadRequest, code, "%+v: %v", tc, body)
			require.Contains(t, body["message"], tc.field, "%+v", tc)
		}
		requireSoleLeader(t, admin, 1)
		enrol(t, admin, fed, "acme-bank", 3)
	})

	unreachable := closedAddr(t)
	t.Run("an unreachable server joins as a non-voter: the leader stays and commits", func(t *testing.T) {
		code, body := d.do(t, "POST", "/v1/cluster/members", d.token,
			map[string]any{"node_id": "n2", "raft_address": unreachable, "api_address": closedAddr(t)})
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "SUFFRAGE_NONVOTER", body["member"].(map[string]any)["suffrage"], "%v", body)
		st := requireSoleLeader(t, admin, 2)
		for _, m := range st.Members {
			if m.NodeId == "n2" {
				require.Equal(t, trustfedv1.Suffrage_SUFFRAGE_NONVOTER, m.Suffrage)
				require.False(t, m.CaughtUp)
			}
		}
		enrol(t, admin, fed, "st-mary", 2)
	})

	t.Run("after a restart the node still elects itself", func(t *testing.T) {
		require.NoError(t, d.srv.Stop())
		d.srv.Restart()
		admin := dial(t, d.srv, d.caFile, d.token)
		requireSoleLeader(t, admin, 2)
		for _, org := range []string{"acme-bank", "st-mary"} {
			_, err := admin.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: org})
			require.NoError(t, err, org)
		}
		enrol(t, admin, fed, "after-restart", 1)
		// And the non-voter can be removed again.
		_, err := admin.Cluster().Leave(ctxT(t), &trustfedv1.LeaveRequest{NodeId: "n2"})
		require.NoError(t, err)
		requireSoleLeader(t, admin, 1)
	})
}
