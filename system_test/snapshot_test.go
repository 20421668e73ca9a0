package system_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// clusterCLI runs the trustfed CLI with the cluster's admin token against
// node id; it fails the test on a non-zero exit unless wantFail.
func (c *cluster) cli(t *testing.T, id string, wantFail bool, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TRUSTFED_ADDR="+c.servers[id].Addrs.GRPCAddr, "TRUSTFED_TOKEN="+c.token,
		"TRUSTFED_CACERT="+c.pki.CAFile, "TRUSTFED_TOKEN_FILE=", "TRUSTFED_CERT=", "TRUSTFED_KEY=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if wantFail {
		require.Error(t, err, "trustfed %v succeeded:\n%s", args, stdout.String())
		return stderr.String()
	}
	require.NoError(t, err, "trustfed %v:\n%s%s", args, stdout.String(), stderr.String())
	return stdout.String()
}

// TestDisasterRecoveryFromSnapshot is the documented disaster recovery
// (docs/operations.md): a backup taken from a follower with `trustfed
// snapshot save`, checked with `snapshot inspect --keys`; the whole cluster
// is lost; `snapshot restore` into one server's data dir (its state moved
// aside) starts a new cluster that serves the same levels, whose audit log
// is consistent with a tree head signed before the loss; the two other
// servers join it with empty state and serve the same.
func TestDisasterRecoveryFromSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	enrol(t, admin, c.fed, "globex", 2)
	enrol(t, admin, c.fed, "initech", 3)
	follower := all[0]
	if follower == leader {
		follower = all[1]
	}

	st, err := admin.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	_, before, vkey := verifiedHead(t, c.clients[follower], st.AuditSize)

	dir := t.TempDir()
	keys, err := admin.Registry().GetKeys(ctxT(t), &trustfedv1.GetKeysRequest{})
	require.NoError(t, err)
	keysFile := filepath.Join(dir, "keys.json")
	kb, err := protojson.Marshal(keys)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keysFile, kb, 0o600))

	backup := filepath.Join(dir, "backup.snap")
	out := c.cli(t, follower, false, "snapshot", "save", backup)
	require.Contains(t, out, "Signed by:")
	var insp struct {
		NodeID            string `json:"nodeId"`
		ReadIndex         uint64 `json:"readIndex"`
		Index             uint64 `json:"index"`
		SignatureVerified bool   `json:"signatureVerified"`
		State             struct {
			Tables []struct {
				Table string `json:"table"`
				Rows  uint64 `json:"rows"`
			} `json:"tables"`
			AuditSize         uint64 `json:"auditSize"`
			AuditRootVerified bool   `json:"auditRootVerified"`
		} `json:"state"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.cli(t, follower, false, "snapshot", "inspect", backup, "--keys", keysFile, "-o", "json")), &insp))
	require.Equal(t, follower, insp.NodeID)
	require.True(t, insp.SignatureVerified)
	require.True(t, insp.State.AuditRootVerified)
	require.GreaterOrEqual(t, insp.State.AuditSize, before.Size)
	require.GreaterOrEqual(t, insp.Index, insp.ReadIndex)
	rows := map[string]uint64{}
	for _, tc := range insp.State.Tables {
		rows[tc.Table] = tc.Rows
	}
	require.EqualValues(t, 2, rows["organizations"])

	t.Run("inspect refuses a damaged file and a foreign key", func(t *testing.T) {
		b, err := os.ReadFile(backup)
		require.NoError(t, err)
		damaged := filepath.Join(t.TempDir(), "damaged.snap")
		b[len(b)/2] ^= 0x40
		require.NoError(t, os.WriteFile(damaged, b, 0o600))
		c.cli(t, follower, true, "snapshot", "inspect", damaged)
		foreign := filepath.Join(t.TempDir(), "keys.json")
		require.NoError(t, os.WriteFile(foreign, []byte(`{"keys":[]}`), 0o600))
		require.Contains(t, c.cli(t, follower, true, "snapshot", "inspect", backup, "--keys", foreign), "does not list")
	})

	// The loss: every server gone at once.
	for _, id := range all {
		c.servers[id].Kill()
	}
	// n1's machine survives: its state is moved aside, the backup restored.
	n1 := c.servers["n1"]
	c.cli(t, "n1", false, "cluster", "repair", "--data-dir", n1.DataDir)
	out = c.cli(t, "n1", false, "snapshot", "restore", backup, "--data-dir", n1.DataDir, "--keys", keysFile)
	require.Contains(t, out, "Restored:")
	require.Contains(t, c.cli(t, "n1", true, "snapshot", "restore", backup, "--data-dir", n1.DataDir), "already holds")
	c.restart(t, "n1")

	requireLevels := func(id string) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, id+" serves the backed-up levels", func() error {
			for org, want := range map[string]uint32{"globex": 2, "initech": 3} {
				resp, err := c.clients[id].Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: org})
				if err != nil {
					return err
				}
				if got := resp.Organization.DeclaredLevel; got != want {
					return testutil.Permanent(fmt.Errorf("%s: %s at level %d, want %d", id, org, got, want))
				}
			}
			return nil
		})
	}
	requireLevels("n1")

	// The restored log extends the one signed before the loss.
	sth, after, _ := verifiedHead(t, c.clients["n1"], before.Size)
	require.Equal(t, before.Origin, sth.Origin)
	cons, err := c.clients["n1"].Audit().GetConsistencyProof(ctxT(t), &trustfedv1.GetConsistencyProofRequest{First: before.Size, Second: after.Size})
	require.NoError(t, err)
	require.NoError(t, client.VerifyConsistency(before, after, cons.Hashes))
	_, _, vkeyAfter := verifiedHead(t, c.clients["n1"], 0)
	require.Equal(t, vkey, vkeyAfter, "the restored cluster signs with the registry key of the lost one")

	// The others join the new cluster with empty state.
	for _, id := range []string{"n2", "n3"} {
		s := c.servers[id]
		c.cli(t, "n1", false, "cluster", "repair", "--data-dir", s.DataDir)
		a := s.Addrs
		s.Restart(append([]string{"-node-id", id, "-raft-fast-timeouts", "-raft-addr", a.RaftAddr, "-grpc-addr", a.GRPCAddr,
			"-http-addr", a.HTTPAddr, "-join", n1.Addrs.GRPCAddr}, c.nodeFiles(t, id)...)...)
	}
	testutil.Eventually(t, 60*time.Second, "3 voters in the restored cluster", func() error {
		st, err := c.clients["n1"].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		if v := countVoters(st); v != 3 {
			return fmt.Errorf("%d voters", v)
		}
		return nil
	})
	for _, id := range all {
		requireLevels(id)
	}

	// The new cluster takes writes, and its log still extends the old head.
	enrol(t, c.clients["n1"], c.fed, "hooli", 1)
	_, later, _ := verifiedHead(t, c.clients["n2"], after.Size+1)
	cons, err = c.clients["n3"].Audit().GetConsistencyProof(ctxT(t), &trustfedv1.GetConsistencyProofRequest{First: before.Size, Second: later.Size})
	require.NoError(t, err)
	require.NoError(t, client.VerifyConsistency(before, later, cons.Hashes))
}
