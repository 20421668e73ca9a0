package system_test

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// forgeRegistrationLevel rewrites, in a stopped server's raft.db, the
// committed registration of org so it declares level: the entry is decoded
// (raft.Log, then the command envelope, the RegisterOrganization and its
// Registration), changed and re-encoded, so every byte still parses. It
// returns the entry's index.
func forgeRegistrationLevel(t *testing.T, dataDir, org string, level uint32) uint64 {
	t.Helper()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, "raft", "raft.db")})
	require.NoError(t, err)
	defer func() { require.NoError(t, store.Close()) }()
	first, err := store.FirstIndex()
	require.NoError(t, err)
	last, err := store.LastIndex()
	require.NoError(t, err)
	for i := first; i <= last; i++ {
		var l raft.Log
		require.NoError(t, store.GetLog(i, &l))
		if l.Type != raft.LogCommand || len(l.Data) < 2 {
			continue
		}
		env := &commandv1.Envelope{}
		if proto.Unmarshal(l.Data[1:], env) != nil || env.Type != commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION {
			continue
		}
		cmd := &commandv1.RegisterOrganization{}
		require.NoError(t, proto.Unmarshal(env.Payload, cmd))
		reg := &trustfedv1.Registration{}
		require.NoError(t, proto.Unmarshal(cmd.Registration, reg))
		if reg.OrganizationId != org {
			continue
		}
		reg.DeclaredLevel = level
		cmd.Registration, err = proto.Marshal(reg)
		require.NoError(t, err)
		env.Payload, err = proto.Marshal(cmd)
		require.NoError(t, err)
		data, err := proto.Marshal(env)
		require.NoError(t, err)
		l.Data = append(l.Data[:1:1], data...)
		require.NoError(t, store.StoreLog(&l))
		return i
	}
	t.Fatalf("no registration of %s in %s", org, dataDir)
	return 0
}

// AG-783 Scenario C, raft.db variant: a stopped follower's log is altered
// (one organisation's committed registration declares another level) and
// it is restarted. Re-applying its log, it reproduces neither the state nor
// the commitment the leader's checkpoints carry: it marks itself diverged
// and answers nothing (UNAVAILABLE, /readyz and /healthz 503,
// trustfed_diverged 1, an ERROR log), and stays so across a restart. No
// node ever shows the forged level. "trustfed cluster repair" then moves
// its state aside; restarted, it rejoins from the leader and serves the
// level the cluster committed.
func TestTamperedRaftLogDivergesAndIsRepaired(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "globex", 2)
	enrol(t, admin, c.fed, "initech", 3) // a later command, so a later checkpoint covers globex's registration
	hc := httpsClient(t, c.pki.CAFile)
	_, m, _ := scrape(t, hc, "https://"+c.servers[leader].Addrs.HTTPAddr, c.token)
	entries := uint64(metricValue(m, "trustfed_audit_log_entries", nil))
	follower := all[0]
	if follower == leader {
		follower = all[1]
	}
	verifiedHead(t, c.clients[follower], entries) // the follower holds a checkpoint committed after the registration

	srv := c.servers[follower]
	require.NoError(t, srv.Stop())
	index := forgeRegistrationLevel(t, srv.DataDir, "globex", 4)
	t.Logf("forged globex's registration at index %d of %s's raft.db", index, follower)
	c.restart(t, follower)

	levels := func() {
		t.Helper()
		for _, id := range all {
			resp, err := c.clients[id].Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "globex"})
			if id == follower {
				require.Equal(t, codes.Unavailable, status.Code(err), "%s: %v", id, err)
				require.Contains(t, status.Convert(err).Message(), "this node's state diverged from the cluster's at index")
				continue
			}
			require.NoError(t, err, id)
			require.Equal(t, uint32(2), resp.Organization.DeclaredLevel, "%s serves globex's level", id)
		}
	}
	base := "https://" + srv.Addrs.HTTPAddr
	testutil.Eventually(t, 60*time.Second, "the tampered follower reports its divergence", func() error {
		if code, reason := readyz(hc, srv.Addrs.HTTPAddr); code != http.StatusServiceUnavailable || !strings.Contains(reason, "diverged") {
			return fmt.Errorf("readyz %d: %s", code, reason)
		}
		return logContains(srv, "state diverged from the cluster's")
	})
	levels()
	code, m, body := scrape(t, hc, base, c.token)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, 1.0, metricValue(m, "trustfed_diverged", nil))
	resp, err := hc.Get(base + "/healthz")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	// The healthy majority's audit log records the fault, reported by the
	// diverged node itself under its node certificate.
	for _, id := range all {
		if id == follower {
			continue
		}
		testutil.Eventually(t, 30*time.Second, id+"'s audit log records the divergence", func() error {
			list, err := c.clients[id].Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{Type: "REPORT_DIVERGENCE"})
			if err != nil {
				return err
			}
			for _, r := range list.Records {
				env, report := &commandv1.Envelope{}, &commandv1.ReportDivergence{}
				if r.Entry.Principal == "node:"+follower && proto.Unmarshal(r.Entry.Command, env) == nil && proto.Unmarshal(env.Payload, report) == nil && report.NodeId == follower && report.Index > 0 {
					return nil
				}
			}
			return fmt.Errorf("%d REPORT_DIVERGENCE entries, none from %s", len(list.Records), follower)
		})
	}
	// A check answered by it is refused too: it never signs a decision.
	_, err = c.clients[follower].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "globex", ToOrganizationId: "initech", Action: "task_send"})
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

	// Diverged across a restart: the marker is in its data dir.
	require.NoError(t, srv.Stop())
	c.restart(t, follower)
	testutil.Eventually(t, 30*time.Second, "the restarted follower is still diverged", func() error {
		if code, reason := readyz(hc, srv.Addrs.HTTPAddr); code != http.StatusServiceUnavailable || !strings.Contains(reason, "diverged") {
			return fmt.Errorf("readyz %d: %s", code, reason)
		}
		return nil
	})
	levels()

	// Repair: stopped, its state moved aside, restarted: it rejoins.
	require.NoError(t, srv.Stop())
	out, err := exec.Command(bin, "cluster", "repair", "--data-dir", srv.DataDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("cluster repair:\n%s", out)
	c.restart(t, follower)
	testutil.Eventually(t, 60*time.Second, "the repaired follower serves globex's committed level", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.clients[follower].Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: "globex"})
		if err != nil {
			return err
		}
		if resp.Organization.DeclaredLevel != 2 {
			return testutil.Permanent(fmt.Errorf("the repaired follower serves level %d", resp.Organization.DeclaredLevel))
		}
		return nil
	})
	code, m, body = scrape(t, hc, base, c.token)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, 0.0, metricValue(m, "trustfed_diverged", nil))
}
