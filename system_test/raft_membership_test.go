package system_test

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// A three-server cluster: joiners are promoted once caught up; the leader
// refuses to remove a live voter while another is dead (quorum lost), but
// removes the dead one; when the cluster then loses its quorum for good, the
// operator recovers the survivor offline and it leads again with every
// committed write.
func TestQuorumLossAndRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t) // waits until n2 and n3 are promoted voters
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	var followers []string
	for _, id := range all {
		if id != leader {
			followers = append(followers, id)
		}
	}
	live, dead := followers[0], followers[1]
	admin := c.clients[leader]
	st, err := admin.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	for _, m := range st.Members {
		require.Equal(t, trustfedv1.Suffrage_SUFFRAGE_VOTER, m.Suffrage, m.NodeId)
		require.True(t, m.CaughtUp, "%s is caught up", m.NodeId)
	}
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "acme-bank", 3)

	c.servers[dead].Kill()
	testutil.Eventually(t, 30*time.Second, "the leader sees "+dead+" unreachable", func() error {
		st, err := admin.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.NodeId == dead && m.CaughtUp {
				return fmt.Errorf("%s still caught up", dead)
			}
		}
		return nil
	})
	_, err = admin.Cluster().Leave(ctxT(t), &trustfedv1.LeaveRequest{NodeId: live})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "removing %s would leave {%s, %s} without a quorum: %v", live, leader, dead, err)
	require.ErrorContains(t, err, "a quorum needs 2")
	_, err = admin.Cluster().Leave(ctxT(t), &trustfedv1.LeaveRequest{NodeId: dead})
	require.NoError(t, err, "removing the dead server is how it is replaced")
	enrol(t, admin, c.fed, "st-mary", 2)

	// Now the last follower goes too: one voter of two, no quorum, for good.
	c.servers[live].Kill()
	testutil.Eventually(t, 30*time.Second, leader+" steps down without a quorum", func() error {
		st, err := admin.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		switch {
		case status.Code(err) == codes.Unavailable:
			return nil // no leader left to check the token against
		case err != nil:
			return err
		case st.Ready:
			return errors.New("still the ready leader")
		}
		return nil
	})
	require.NoError(t, c.servers[leader].Stop())
	dataDir := c.servers[leader].DataDir
	out, err := exec.Command(bin, "cluster", "recover", "--data-dir", dataDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), leader+" at "+c.servers[leader].Addrs.RaftAddr)

	c.restart(t, leader)
	require.Equal(t, leader, c.leader(t, leader), "the survivor elects itself")
	st = requireSoleLeader(t, admin, 1)
	require.Equal(t, leader, st.Members[0].NodeId)
	for _, org := range []string{"acme-bank", "st-mary"} {
		_, err := admin.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: org})
		require.NoError(t, err, "%s, committed before the loss, is there", org)
	}
	enrol(t, admin, c.fed, "after-recovery", 1)
	require.NoError(t, logContains(c.servers[leader], "recovered the cluster configuration"))
}
