package system_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"net/http"
	"os"
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
	"github.com/trustfed/trustfed/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protodelim"
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
	c, follower, hc := divergenceCluster(t)
	srv := c.servers[follower]
	require.NoError(t, srv.Stop())
	index := forgeRegistrationLevel(t, srv.DataDir, "globex", 4)
	t.Logf("forged globex's registration at index %d of %s's raft.db", index, follower)
	c.restart(t, follower)

	requireDiverged(t, c, follower, hc)
	requireAuditedDivergence(t, c, follower)
	// A check answered by it is refused too: it never signs a decision.
	_, err := c.clients[follower].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "globex", ToOrganizationId: "initech", Action: "task_send"})
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
	requireGlobexLevel(t, c, follower)

	repairAndServe(t, c, follower, hc)
}

// divergenceCluster starts a 3-node cluster (extra: more server flags)
// with globex (level 2) and initech (3) registered, and returns it, a
// follower that holds a checkpoint committed after both, and an HTTPS
// client of the cluster.
func divergenceCluster(t *testing.T, extra ...string) (*cluster, string, *http.Client) {
	t.Helper()
	c := startCluster(t, extra...)
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
	verifiedHead(t, c.clients[follower], entries)
	return c, follower, hc
}

// repairAndServe stops the diverged node, runs trustfed cluster repair on
// its data dir and restarts it: it rejoins from the leader and serves
// globex's committed level, no longer diverged.
func repairAndServe(t *testing.T, c *cluster, id string, hc *http.Client) {
	t.Helper()
	srv := c.servers[id]
	require.NoError(t, srv.Stop())
	out, err := exec.Command(bin, "cluster", "repair", "--data-dir", srv.DataDir).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("cluster repair:\n%s", out)
	c.restart(t, id)
	testutil.Eventually(t, 60*time.Second, "the repaired node serves globex's committed level", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := c.clients[id].Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: "globex"})
		if err != nil {
			return err
		}
		if resp.Organization.DeclaredLevel != 2 {
			return testutil.Permanent(fmt.Errorf("the repaired node serves level %d", resp.Organization.DeclaredLevel))
		}
		return nil
	})
	code, m, body := scrape(t, hc, "https://"+srv.Addrs.HTTPAddr, c.token)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, 0.0, metricValue(m, "trustfed_diverged", nil))
}

// requireGlobexLevel: every node but the diverged one serves globex at the
// level the cluster committed (2); the diverged one answers UNAVAILABLE.
func requireGlobexLevel(t *testing.T, c *cluster, diverged string) {
	t.Helper()
	for id, cl := range c.clients {
		resp, err := cl.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "globex"})
		if id == diverged {
			require.Equal(t, codes.Unavailable, status.Code(err), "%s: %v", id, err)
			require.Contains(t, status.Convert(err).Message(), "this node's state diverged from the cluster's at index")
			continue
		}
		require.NoError(t, err, id)
		require.Equal(t, uint32(2), resp.Organization.DeclaredLevel, "%s serves globex's level", id)
	}
}

// requireDiverged waits until node id reports its divergence (/readyz 503
// naming it, an ERROR log line), then checks /healthz, trustfed_diverged
// and that no node serves a forged level.
func requireDiverged(t *testing.T, c *cluster, id string, hc *http.Client) {
	t.Helper()
	srv := c.servers[id]
	testutil.Eventually(t, 60*time.Second, id+" reports its divergence", func() error {
		if code, reason := readyz(hc, srv.Addrs.HTTPAddr); code != http.StatusServiceUnavailable || !strings.Contains(reason, "diverged") {
			return fmt.Errorf("readyz %d: %s", code, reason)
		}
		return logContains(srv, "diverged from the cluster's")
	})
	requireGlobexLevel(t, c, id)
	base := "https://" + srv.Addrs.HTTPAddr
	code, m, body := scrape(t, hc, base, c.token)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, 1.0, metricValue(m, "trustfed_diverged", nil))
	resp, err := hc.Get(base + "/healthz")
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

// requireAuditedDivergence: the healthy majority's audit log records the
// fault, reported by the diverged node itself under its node certificate.
func requireAuditedDivergence(t *testing.T, c *cluster, diverged string) {
	t.Helper()
	for id, cl := range c.clients {
		if id == diverged {
			continue
		}
		testutil.Eventually(t, 30*time.Second, id+"'s audit log records the divergence", func() error {
			list, err := cl.Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{Type: "REPORT_DIVERGENCE"})
			if err != nil {
				return err
			}
			for _, r := range list.Records {
				env, report := &commandv1.Envelope{}, &commandv1.ReportDivergence{}
				if r.Entry.Principal == "node:"+diverged && proto.Unmarshal(r.Entry.Command, env) == nil && proto.Unmarshal(env.Payload, report) == nil && report.NodeId == diverged && report.Index > 0 {
					return nil
				}
			}
			return fmt.Errorf("%d REPORT_DIVERGENCE entries, none from %s", len(list.Records), diverged)
		})
	}
}

// newestSnapshot is the state.bin of the complete snapshot of the highest
// index in a server's data dir ("" if none) and that index.
func newestSnapshot(dataDir string) (string, uint64) {
	metas, _ := filepath.Glob(filepath.Join(dataDir, "raft", "snapshots", "*", "meta.json"))
	var newest string
	var index uint64
	for _, m := range metas {
		if strings.HasSuffix(filepath.Dir(m), ".tmp") {
			continue // still being written
		}
		b, err := os.ReadFile(m)
		var meta struct{ Index uint64 }
		if err != nil || json.Unmarshal(b, &meta) != nil {
			continue
		}
		if meta.Index >= index {
			newest, index = filepath.Join(filepath.Dir(m), "state.bin"), meta.Index
		}
	}
	return newest, index
}

// forgeSnapshotLevel rewrites the newest Raft snapshot in a stopped
// server's data dir so organisation org has declared level: every record is
// decoded and re-encoded, and meta.json's size and CRC are updated, so the
// snapshot still opens and restores. It returns the snapshot's index.
func forgeSnapshotLevel(t *testing.T, dataDir, org string, level uint32) uint64 {
	t.Helper()
	stateFile, _ := newestSnapshot(dataDir)
	require.NotEmpty(t, stateFile, "no snapshot in %s", dataDir)
	raw, err := os.ReadFile(stateFile)
	require.NoError(t, err)
	// consensus's frame: "TFCS", version, index (8), metadata length (4),
	// metadata; then the registry's snapshot.
	require.Equal(t, "TFCS", string(raw[:4]))
	frame := 17 + int(binary.BigEndian.Uint32(raw[13:17]))
	r := bufio.NewReader(bytes.NewReader(raw[frame:]))
	opts := protodelim.UnmarshalOptions{MaxSize: -1}
	hdr := &commandv1.SnapshotHeader{}
	require.NoError(t, opts.UnmarshalFrom(r, hdr))
	var out bytes.Buffer
	out.Write(raw[:frame])
	_, err = protodelim.MarshalTo(&out, hdr)
	require.NoError(t, err)
	forged := false
	for {
		rec := &commandv1.SnapshotRecord{}
		if err := opts.UnmarshalFrom(r, rec); errors.Is(err, io.EOF) {
			break
		} else {
			require.NoError(t, err)
		}
		if o := rec.GetOrganization(); o != nil && o.Id == org {
			o.DeclaredLevel, forged = level, true
		}
		_, err = protodelim.MarshalTo(&out, rec)
		require.NoError(t, err)
	}
	require.True(t, forged, "%s is not in the snapshot", org)
	require.NoError(t, os.WriteFile(stateFile, out.Bytes(), 0o600))

	metaFile := filepath.Join(filepath.Dir(stateFile), "meta.json")
	b, err := os.ReadFile(metaFile)
	require.NoError(t, err)
	meta := map[string]any{}
	require.NoError(t, json.Unmarshal(b, &meta))
	sum := crc64.New(crc64.MakeTable(crc64.ECMA))
	sum.Write(out.Bytes())
	meta["Size"], meta["CRC"] = out.Len(), sum.Sum(nil)
	b, err = json.Marshal(meta)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(metaFile, b, 0o600))
	return hdr.Index
}

// AG-783 Scenario C, snapshot variant: the follower's newest snapshot says
// globex is level 4 (its checksum fixed, so it restores). At restart it
// restores the forged state, but before serving it compares its state with
// a checkpoint certified by a quorum of the registry nodes (a peer's newest
// one, or its own view certified by its peers), trusting no single server:
// it diverges, serves nothing, and no node shows level 4. Repaired, it
// serves level 2.
func TestTamperedSnapshotDiverges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c, follower, hc := divergenceCluster(t, "-raft-snapshot-threshold", "8")
	srv := c.servers[follower]
	admin := c.clients[c.leader(t, "n1", "n2", "n3")]
	filler := 0
	testutil.Eventually(t, 30*time.Second, "the follower snapshotted globex's registration", func() error {
		file, index := newestSnapshot(srv.DataDir)
		raw, err := os.ReadFile(file)
		if err != nil || !bytes.Contains(raw, []byte("globex")) {
			// A follower snapshots once 8 entries arrived since its last
			// snapshot; an idle cluster would never get there.
			for range 8 {
				filler++
				if _, err := admin.Access().CreateToken(ctxT(t), &trustfedv1.CreateTokenRequest{
					Role: trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, Description: fmt.Sprintf("filler %d", filler)}); err != nil {
					return err
				}
			}
			return fmt.Errorf("no snapshot holds globex yet (newest: index %d, %v)", index, err)
		}
		return nil
	})
	require.NoError(t, srv.Stop())
	index := forgeSnapshotLevel(t, srv.DataDir, "globex", 4)
	t.Logf("forged globex's level in %s's snapshot of index %d", follower, index)
	c.restart(t, follower)

	requireDiverged(t, c, follower, hc)
	// Found against the registry nodes' certification — a certified
	// checkpoint it re-applies after the snapshot, or the start-up check (a
	// peer's certified checkpoint, or the peers certifying this node's own
	// view), whichever comes first — never by taking the leader's word.
	marker, err := os.ReadFile(filepath.Join(srv.DataDir, registry.DivergenceMarker))
	require.NoError(t, err)
	require.Regexp(t, `certified checkpoint|registry nodes \(a quorum\)|certified by a quorum of the registry nodes`, string(marker))
	require.NotContains(t, string(marker), "the leader")
	requireAuditedDivergence(t, c, follower)
	repairAndServe(t, c, follower, hc)
}
