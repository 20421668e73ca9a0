package system_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type cluster struct {
	fed     *testutil.Federation
	pki     *testutil.ClusterPKI
	servers map[string]*testutil.Server
	clients map[string]*client.Client
	token   string
	admins  admins
}

// startCluster starts n1 (bootstrap) and joins n2, n3 through it, each a
// real process with its own data dir, over loopback with mutual TLS.
func startCluster(t testing.TB, extra ...string) *cluster {
	return startClusterWith(t, clusterHooks{}, extra...)
}

// clusterHooks adapt startClusterWith to a test: flags per node, and a
// call as each server process has started (before the next one does).
type clusterHooks struct {
	args    func(id string) []string
	started func(id string, s *testutil.Server)
	// binary, if set, is the binary node id runs (default: bin).
	binary func(id string) string
	// nodes is the cluster's size (default 3): n1 bootstraps, n2..nN join.
	nodes int
	// before, if set, is called with node id's data dir before the node
	// first starts (e.g. to mount a file system there).
	before func(id, dataDir string)
	// env, if set, is added to node id's environment.
	env func(id string) []string
}

// nodeIDs are the ids of an n-node cluster: n1..nN.
func nodeIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("n%d", i+1)
	}
	return ids
}

// startClusterWith is startCluster with hooks.
func startClusterWith(t testing.TB, hooks clusterHooks, extra ...string) *cluster {
	root := t.TempDir()
	c := &cluster{fed: testutil.NewFederation(t), pki: testutil.NewClusterPKI(t, root), servers: map[string]*testutil.Server{}, clients: map[string]*client.Client{}}
	args := func(id string, more ...string) []string {
		a := append([]string{"-node-id", id, "-raft-fast-timeouts"}, loopbackPorts...)
		a = append(a, c.nodeFiles(t, id)...)
		a = append(a, more...)
		if hooks.args != nil {
			a = append(a, hooks.args(id)...)
		}
		return append(a, extra...)
	}
	start := func(id string, more ...string) *testutil.Server {
		b := bin
		if hooks.binary != nil {
			b = hooks.binary(id)
		}
		dir := filepath.Join(root, id)
		if hooks.before != nil {
			hooks.before(id, dir)
		}
		var env []string
		if hooks.env != nil {
			env = hooks.env(id)
		}
		s := testutil.StartServerEnv(t, b, dir, env, args(id, more...)...)
		if hooks.started != nil {
			hooks.started(id, s)
		}
		c.servers[id] = s
		return s
	}
	n1 := start("n1", "-bootstrap")
	c.token = adminToken(t, n1.DataDir)
	c.clients["n1"] = dial(t, n1, c.pki.CAFile, c.token)
	waitServing(t, c.clients["n1"])
	nodes := hooks.nodes
	if nodes == 0 {
		nodes = 3
	}
	for _, id := range nodeIDs(nodes)[1:] {
		c.clients[id] = dial(t, start(id, "-join", n1.Addrs.GRPCAddr), c.pki.CAFile, c.token)
	}
	c.admins = enrolAdmins(t, c.clients["n1"])
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d voters, all nodes serving", nodes), func() error {
		st, err := c.clients["n1"].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		// n2.. join as non-voters; the leader promotes them once caught up.
		if voters := countVoters(st); len(st.Members) != nodes || voters != nodes {
			return fmt.Errorf("%d members, %d voters", len(st.Members), voters)
		}
		for id, cl := range c.clients {
			if _, err := cl.Registry().ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{}); err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
		}
		return nil
	})
	c.endorseNodeKeys(t)
	return c
}

// endorseNodeKeys has the admin quorum endorse every node's own signing
// key, asked from the node itself (the operator's steps in docs/keys.md),
// and waits until every node sees every endorsement. The bootstrapping
// node's key is endorsed at bootstrap already (BOOTSTRAP_NODE_KEY).
func (c *cluster) endorseNodeKeys(t testing.TB) {
	t.Helper()
	ids := nodeIDs(len(c.servers))
	require.NotEmpty(t, ids, "endorseNodeKeys needs the cluster's servers")
	now := time.Now()
	for _, id := range ids {
		st, err := c.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		require.NoError(t, err)
		require.Equal(t, id, st.NodeId)
		if st.NodeKeyEndorsed {
			require.Equal(t, "n1", id, "only the bootstrapping node's key is endorsed at bootstrap")
			continue
		}
		c.admins.apply(t, client.EndorseNodeKey(id, st.NodePublicKey, now.Add(-time.Minute), now.Add(24*time.Hour)), c.clients["n1"])
	}
	testutil.Eventually(t, 30*time.Second, "every node's signing key endorsed", func() error {
		for _, id := range ids {
			st, err := c.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
			if err != nil {
				return err
			}
			if !st.NodeKeyEndorsed {
				return fmt.Errorf("%s: key %s not endorsed yet", id, st.NodeKeyId)
			}
		}
		return nil
	})
}

func countVoters(st *trustfedv1.StatusResponse) int {
	n := 0
	for _, m := range st.Members {
		if m.Suffrage == trustfedv1.Suffrage_SUFFRAGE_VOTER {
			n++
		}
	}
	return n
}

// nodeFiles are the -tls-* flags of server id: its node certificate, the
// cluster CA and the CA's key (every server issues member certificates).
func (c *cluster) nodeFiles(t testing.TB, id string) []string {
	t.Helper()
	return append(c.pki.NodeFiles(t, id), "-tls-ca-key", filepath.Join(c.pki.Dir, "ca-key.pem"))
}

// restart starts stopped server id again from its data dir, at its old
// addresses, without -bootstrap or -join.
func (c *cluster) restart(t testing.TB, id string) {
	t.Helper()
	a := c.servers[id].Addrs
	c.servers[id].Restart(append([]string{"-node-id", id, "-raft-fast-timeouts",
		"-raft-addr", a.RaftAddr, "-grpc-addr", a.GRPCAddr, "-http-addr", a.HTTPAddr},
		c.nodeFiles(t, id)...)...)
}

func (c *cluster) leader(t testing.TB, among ...string) string {
	t.Helper()
	var leader string
	testutil.Eventually(t, 30*time.Second, "a ready leader", func() error {
		for _, id := range among {
			st, err := c.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
			if err == nil && st.LeaderReady && st.State == "Leader" {
				leader = id
				return nil
			}
		}
		return fmt.Errorf("no ready leader among %v", among)
	})
	return leader
}

func TestThreeNodeCluster(t *testing.T) {
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

	t.Run("write through a follower, read linearizably everywhere", func(t *testing.T) {
		f := c.clients[followers[0]]
		accredit(t, f, c.fed, c.admins)
		enrol(t, f, c.fed, "acme-bank", 3)
		enrol(t, c.clients[followers[1]], c.fed, "st-mary", 2)
		agree(t, f, c.fed, "acme-bank", "st-mary", "task_send")
		members := c.memberClients(t, f, "acme-bank")
		for _, id := range all {
			resp, err := members[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{
				FromOrganizationId: "acme-bank", ToOrganizationId: "st-mary", Action: "task_send"})
			require.NoError(t, err, id)
			require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, id)
			require.EqualValues(t, 2, resp.EffectiveLevel, id)
			require.Equal(t, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE, resp.Meta.Consistency)
			require.Equal(t, id, resp.Meta.NodeId)
		}
	})

	t.Run("a member's writes through followers are forwarded and authorised as the member", func(t *testing.T) {
		acme := testutil.EnrolMember(t, c.clients[leader], c.fed, "acme-bank", "")
		stMary := testutil.EnrolMember(t, c.clients[leader], c.fed, "st-mary", "")
		onFollower := func(m *testutil.Member, i int) *client.Client {
			return m.Dial(t, baseConfig(c.servers[followers[i]], c.pki.CAFile))
		}
		opened, err := onFollower(acme, 0).Cascades().OpenSession(ctxT(t), &trustfedv1.OpenSessionRequest{ToOrganizationId: "st-mary", Action: "task_send"})
		require.NoError(t, err)
		require.Equal(t, "acme-bank", opened.Session.FromOrganizationId, "the organisation comes from the certificate")
		_, err = onFollower(stMary, 1).Cascades().HeartbeatSession(ctxT(t), &trustfedv1.HeartbeatSessionRequest{SessionId: opened.Session.Id})
		require.NoError(t, err)
		_, err = onFollower(stMary, 0).Cascades().OpenSession(ctxT(t), &trustfedv1.OpenSessionRequest{FromOrganizationId: "acme-bank", ToOrganizationId: "st-mary", Action: "task_send"})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "st-mary's node cannot open a session as acme-bank: %v", err)
		closed, err := onFollower(acme, 1).Cascades().CloseSession(ctxT(t), &trustfedv1.CloseSessionRequest{SessionId: opened.Session.Id, Reason: "done"})
		require.NoError(t, err)
		require.Equal(t, trustfedv1.SessionStatus_SESSION_STATUS_CLOSED, closed.Session.Status)

		// The leader applied them as the member nodes, not as the followers.
		principal := func(org, typ string) func() error {
			want := "member:" + org + "/" + map[string]string{"acme-bank": acme.Node, "st-mary": stMary.Node}[org]
			return func() error {
				resp, err := c.clients[leader].Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{OrganizationId: org, Type: typ})
				if err != nil {
					return err
				}
				for _, r := range resp.Records {
					if r.Entry.Principal == want {
						return nil
					}
				}
				return fmt.Errorf("no %s entry by %s among %d yet", typ, want, len(resp.Records))
			}
		}
		testutil.Eventually(t, 30*time.Second, "OPEN_SESSION audited as acme-bank's node", principal("acme-bank", "OPEN_SESSION"))
		testutil.Eventually(t, 30*time.Second, "HEARTBEAT_SESSION audited as st-mary's node", principal("st-mary", "HEARTBEAT_SESSION"))
		testutil.Eventually(t, 30*time.Second, "CLOSE_SESSION audited as acme-bank's node", principal("acme-bank", "CLOSE_SESSION"))
	})

	t.Run("each node's metrics report its own Raft role and its own checks", func(t *testing.T) {
		hc := httpsClient(t, c.pki.CAFile)
		for _, id := range all {
			code, m, body := scrape(t, hc, "https://"+c.servers[id].Addrs.HTTPAddr, c.token)
			require.Equal(t, http.StatusOK, code, "%s: %s", id, body)
			role := "Follower"
			if id == leader {
				role = "Leader"
			}
			require.Equal(t, 1.0, metricValue(m, "trustfed_raft_state", map[string]string{"state": role}), "%s is a %s", id, role)
			require.Equal(t, metricValue(m, "trustfed_raft_state", map[string]string{"state": "Leader"}), metricValue(m, "trustfed_raft_ready_leader", nil), id)
			require.Equal(t, 1.0, metricValue(m, "trustfed_raft_has_leader", nil), id)
			// The previous subtest sent one check to each node.
			require.Equal(t, 1.0, metricValue(m, "grpc_server_handled_total",
				map[string]string{"grpc_method": "CheckInteraction", "grpc_code": "OK"}), "%s answered one check", id)
			require.Equal(t, 1.0, metricValue(m, "trustfed_decisions_total", map[string]string{"decision": "allow"}), id)
		}
	})

	t.Run("every acknowledged write is visible to the next read on any node", func(t *testing.T) {
		for i := 0; i < 30; i++ {
			writer := c.clients[all[i%3]]
			reader := c.clients[all[(i+1)%3]]
			name := fmt.Sprintf("Acme Bank %d", i)
			_, err := writer.Admin().UpdateOrganization(ctxT(t), &trustfedv1.UpdateOrganizationRequest{OrganizationId: "acme-bank", Name: name})
			require.NoError(t, err)
			got, err := reader.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "acme-bank"})
			require.NoError(t, err)
			require.Equal(t, name, got.Organization.Name, "round %d: read on %s after write on %s", i, all[(i+1)%3], all[i%3])
		}
	})

	t.Run("a level change needs two admins; each replica checks their signatures", func(t *testing.T) {
		for i := 0; i < 6; i++ {
			proposer, approver, reader := c.clients[all[i%3]], c.clients[all[(i+1)%3]], c.clients[all[(i+2)%3]]
			level := uint32(i%4) + 1
			change := testutil.SetLevel("acme-bank", level)
			change.Reason = fmt.Sprintf("round %d", i)
			rec, err := proposer.ProposeAdminChange(ctxT(t), c.admins[0], change, time.Hour)
			require.NoError(t, err)
			require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING, rec.Status)
			_, err = approver.ApproveAdminChange(ctxT(t), c.admins[0], rec.Id)
			require.Equal(t, codes.AlreadyExists, status.Code(err), "the same admin cannot approve twice: %v", err)
			got, err := reader.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "acme-bank"})
			require.NoError(t, err)
			require.NotEqual(t, level, got.Organization.DeclaredLevel, "round %d: one approval changed nothing", i)
			rec, err = approver.ApproveAdminChange(ctxT(t), c.admins[1], rec.Id)
			require.NoError(t, err)
			require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED, rec.Status)
			got, err = reader.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "acme-bank"})
			require.NoError(t, err)
			require.Equal(t, level, got.Organization.DeclaredLevel, "round %d: read on %s after approval on %s", i, all[(i+2)%3], all[(i+1)%3])
		}
	})

	t.Run("kill the leader: a new one is elected, data intact", func(t *testing.T) {
		c.servers[leader].Kill()
		newLeader := c.leader(t, followers...)
		require.NotEqual(t, leader, newLeader)
		for _, id := range followers {
			got, err := c.clients[id].Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "st-mary"})
			require.NoError(t, err, id)
			require.EqualValues(t, 2, got.Organization.DeclaredLevel)
		}
		enrol(t, c.clients[followers[0]], c.fed, "after-failover", 1)
	})

	t.Run("restart the stopped node from its data dir: it catches up", func(t *testing.T) {
		c.restart(t, leader)
		testutil.Eventually(t, 30*time.Second, "restarted node has the write made while it was down", func() error {
			_, err := c.clients[leader].Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "after-failover"})
			return err
		})
		st, err := c.clients[leader].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		require.NoError(t, err)
		require.Len(t, st.Members, 3)
	})

	t.Run("a node without a certificate from the cluster CA cannot join", func(t *testing.T) {
		other := testutil.NewClusterPKI(t, t.TempDir())
		args := append([]string{"-node-id", "rogue", "-raft-fast-timeouts"}, loopbackPorts...)
		args = append(args, other.NodeFiles(t, "rogue")...)
		args = append(args, "-join", c.servers[followers[0]].Addrs.GRPCAddr)
		rogue := testutil.StartServer(t, bin, filepath.Join(t.TempDir(), "rogue"), args...)
		defer rogue.Kill()
		// It cannot even complete a TLS handshake with a member; the
		// membership stays at three however long it retries.
		st, err := c.clients[followers[0]].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		require.NoError(t, err)
		require.Len(t, st.Members, 3)
		testutil.Eventually(t, 20*time.Second, "rogue's join is refused at the TLS handshake", func() error {
			return logContains(rogue, "certificate signed by unknown authority")
		})
		st, err = c.clients[followers[0]].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		require.NoError(t, err)
		require.Len(t, st.Members, 3)
	})

	for _, s := range c.servers {
		require.NoError(t, s.Stop(), "clean shutdown on SIGTERM")
	}
}
