package system_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// verifiedHead fetches the newest tree head with at least size entries and
// verifies it with the registry key from GetKeys.
func verifiedHead(t testing.TB, c *client.Client, size uint64) (*trustfedv1.GetSignedTreeHeadResponse, attestation.Checkpoint, string) {
	t.Helper()
	var sth *trustfedv1.GetSignedTreeHeadResponse
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("a checkpoint of at least %d entries", size), func() error {
		var err error
		sth, err = c.Audit().GetSignedTreeHead(ctxT(t), &trustfedv1.GetSignedTreeHeadRequest{})
		if err != nil {
			return err
		}
		if sth.TreeSize < size {
			return fmt.Errorf("checkpoint of %d entries", sth.TreeSize)
		}
		return nil
	})
	keys, err := c.Registry().GetKeys(ctxT(t), &trustfedv1.GetKeysRequest{})
	require.NoError(t, err)
	vkey, err := attestation.CheckpointVerifierKey(sth.Origin, keys.Keys[len(keys.Keys)-1].PublicKey)
	require.NoError(t, err)
	cp, err := client.VerifyTreeHead(sth, vkey, nil, 0)
	require.NoError(t, err)
	return sth, cp, vkey
}

// Every decision a member receives is in the audit log before it is
// returned, on the leader and on followers, and provably so: its entry is
// the signed decision, included in a signed checkpoint every node serves.
func TestAuditedDecisionsInACluster(t *testing.T) {
	c := startCluster(t)
	n1 := c.clients["n1"]
	accredit(t, n1, c.fed, c.admins)
	enrol(t, n1, c.fed, "clinic", 3)
	enrol(t, n1, c.fed, "lab", 3)
	agree(t, n1, c.fed, "clinic", "lab", "task_send")
	clinic := c.memberClients(t, n1, "clinic")

	type got struct {
		resp *trustfedv1.CheckInteractionResponse
		node string
	}
	var decisions []got
	for round := range 6 {
		for _, id := range []string{"n1", "n2", "n3"} {
			resp, err := clinic[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{
				FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "task_send",
				DataTypes: []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_PERSON_NAME}, Value: int64(round),
			})
			require.NoError(t, err)
			require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision)
			decisions = append(decisions, got{resp, id})
		}
	}
	last := decisions[len(decisions)-1].resp.AuditSequence
	// Each node serves the same checkpoint, and every decision is in it.
	var heads []attestation.Checkpoint
	for _, id := range []string{"n1", "n2", "n3"} {
		_, cp, _ := verifiedHead(t, c.clients[id], last+1)
		heads = append(heads, cp)
	}
	_, cp, _ := verifiedHead(t, n1, last+1)
	seen := map[uint64]bool{}
	for _, d := range decisions {
		require.False(t, seen[d.resp.AuditSequence], "two decisions share an entry")
		seen[d.resp.AuditSequence] = true
		p, err := c.clients[d.node].Audit().GetInclusionProof(ctxT(t), &trustfedv1.GetInclusionProofRequest{Sequence: d.resp.AuditSequence, TreeSize: cp.Size})
		require.NoError(t, err)
		require.NoError(t, client.VerifyInclusion(p.Leaf, d.resp.AuditSequence, p.Hashes, cp))
		var e trustfedv1.AuditEntry
		require.NoError(t, proto.Unmarshal(p.Leaf, &e))
		require.Equal(t, "DECISION", e.Type)
		require.Equal(t, d.resp.Statement, e.Decision.Statement, "the entry is the decision the member received")
		require.Equal(t, d.resp.Signature, e.Decision.Signature)
		require.Equal(t, d.node, e.Decision.NodeId)
		require.Equal(t, []string{"clinic", "lab"}, e.OrganizationIds)
	}
	// Later heads are consistent with earlier ones, from any node.
	for i, id := range []string{"n1", "n2", "n3"} {
		cons, err := c.clients[id].Audit().GetConsistencyProof(ctxT(t), &trustfedv1.GetConsistencyProofRequest{First: heads[i].Size, Second: cp.Size})
		require.NoError(t, err)
		require.NoError(t, client.VerifyConsistency(heads[i], cp, cons.Hashes))
	}
	// A member-facing view: entries naming lab, in the HIPAA view.
	list, err := c.clients["n3"].Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{
		OrganizationId: "lab", Type: "DECISION", Compliance: trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA, WithProofs: true, PageSize: 5,
	})
	require.NoError(t, err)
	require.Len(t, list.Records, 5)
	require.NotEmpty(t, list.NextPageToken)
	lcp, err := client.VerifyTreeHead(mustHead(t, n1, list.TreeSize), headKey(t, n1), nil, 0)
	require.NoError(t, err)
	for _, r := range list.Records {
		require.NoError(t, client.VerifyInclusion(r.Leaf, r.Sequence, r.InclusionProof, lcp))
	}
	// Every replica holds the same log.
	testutil.Eventually(t, 20*time.Second, "every replica at the same audit size", func() error {
		var sizes []uint64
		for _, id := range []string{"n1", "n2", "n3"} {
			st, err := c.clients[id].Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
			if err != nil {
				return err
			}
			if st.AuditFault != "" {
				return fmt.Errorf("%s: audit fault %s", id, st.AuditFault)
			}
			sizes = append(sizes, st.AuditSize)
		}
		if sizes[0] != sizes[1] || sizes[1] != sizes[2] {
			return fmt.Errorf("audit sizes %v", sizes)
		}
		return nil
	})
}

// mustHead is the kept checkpoint of exactly size entries.
func mustHead(t testing.TB, c *client.Client, size uint64) *trustfedv1.GetSignedTreeHeadResponse {
	t.Helper()
	sth, err := c.Audit().GetSignedTreeHead(ctxT(t), &trustfedv1.GetSignedTreeHeadRequest{})
	require.NoError(t, err)
	require.Equal(t, size, sth.TreeSize, "the list was read in the newest checkpoint's tree")
	return sth
}

func headKey(t testing.TB, c *client.Client) string {
	t.Helper()
	_, _, vkey := verifiedHead(t, c, 0)
	return vkey
}

// A node whose audit log was rewritten on disk is detected: at start its
// entries no longer hash to its tree, and /healthz and cluster status say
// so; a checkpoint it signed earlier no longer matches what it serves.
func TestTamperedAuditLogIsDetected(t *testing.T) {
	d := startDev(t)
	c := dial(t, d.srv, d.caFile, d.token)
	waitServing(t, c)
	fed := testutil.NewFederation(t)
	accredit(t, c, fed, d.admins)
	enrol(t, c, fed, "clinic", 3)
	_, before, _ := verifiedHead(t, c, 5)

	require.NoError(t, d.srv.Stop())
	db, err := bolt.Open(filepath.Join(d.srv.DataDir, "audit", "audit.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := binary.BigEndian.AppendUint64(nil, 3)
		v := append([]byte(nil), b.Get(k)...)
		if len(v) == 0 {
			return errors.New("entry 3 missing")
		}
		v[len(v)/2] ^= 0x01 // one bit of one entry
		return b.Put(k, v)
	}))
	require.NoError(t, db.Close())
	d.srv.Restart()
	c = dial(t, d.srv, d.caFile, d.token)
	waitServing(t, c)

	testutil.Eventually(t, 30*time.Second, "the node reports its audit log altered", func() error {
		st, err := c.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err
		}
		if !strings.Contains(st.AuditFault, "does not verify") {
			return fmt.Errorf("audit fault %q", st.AuditFault)
		}
		return nil
	})
	resp, err := d.http.Get("https://" + d.srv.Addrs.HTTPAddr + "/healthz") // new ports after the restart
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, string(body), "audit log fault")

	// The altered entry no longer proves against the head signed before.
	p, err := c.Audit().GetInclusionProof(ctxT(t), &trustfedv1.GetInclusionProofRequest{Sequence: 3, TreeSize: before.Size})
	require.NoError(t, err)
	require.ErrorIs(t, client.VerifyInclusion(p.Leaf, 3, p.Hashes, before), client.ErrAuditProof)
}

// BenchmarkAuditedCheck compares, in one run, checks whose decision is
// committed to the audit log before it is returned with the same checks
// answered without it (-unaudited-decisions, dev only): the cost of
// auditing every decision (goal: under 20% of throughput).
func BenchmarkAuditedCheck(b *testing.B) {
	for _, mode := range []struct {
		name  string
		extra []string
	}{{"audited", nil}, {"unaudited", []string{"-unaudited-decisions"}}} {
		b.Run(mode.name, func(b *testing.B) {
			d := startDev(b, slices.Concat(noRateLimits, mode.extra)...)
			c := dial(b, d.srv, d.caFile, d.token)
			waitServing(b, c)
			fed := testutil.NewFederation(b)
			accredit(b, c, fed, d.admins)
			enrol(b, c, fed, "bench-a", 4)
			enrol(b, c, fed, "bench-b", 3)
			agree(b, c, fed, "bench-a", "bench-b", "task_send")
			member := memberOf(b, c, d.srv, d.caFile, fed, "bench-a")
			req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := member.Registry().CheckInteraction(context.Background(), req)
					if err != nil || resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
						b.Errorf("check: %v %v", resp.GetDecision(), err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
		})
	}
}

// The evidence bundle of a HIPAA period exported from a live registry
// verifies offline with public keys only; one byte changed anywhere in it
// fails verification; replaying the whole log re-derives every decision
// with no mismatch; a tree head kept earlier is proven a prefix of today's.
func TestEvidenceBundleEndToEnd(t *testing.T) {
	d := startDev(t)
	c := dial(t, d.srv, d.caFile, d.token)
	waitServing(t, c)
	fed := testutil.NewFederation(t)
	accredit(t, c, fed, d.admins)
	enrol(t, c, fed, "clinic", 3)
	enrol(t, c, fed, "lab", 3)
	agree(t, c, fed, "clinic", "lab", "task_send", "context_share")
	clinic := memberOf(t, c, d.srv, d.caFile, fed, "clinic")
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	var last uint64
	for i := range 20 {
		action := []string{"task_send", "context_share", "agent_spawn"}[i%3] // agent_spawn is denied (level 4)
		resp, err := clinic.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{
			FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: action,
			DataTypes: []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_PERSON_NAME},
		})
		require.NoError(t, err)
		last = resp.AuditSequence
	}
	_, _, vkey := verifiedHead(t, c, last+1)
	dir := t.TempDir()
	head := filepath.Join(dir, "head.json")
	out, errOut, code := d.cli(t, d.token, "audit", "sth", "--save", head, "--registry-key", vkey)
	require.Equal(t, 0, code, "stdout %s stderr %s", out, errOut)

	// Some more history, then the export.
	d.admins.apply(t, testutil.SetStatus("lab", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), c)
	resp, err := clinic.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "ping"})
	require.NoError(t, err)
	verifiedHead(t, c, resp.AuditSequence+1)
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	bundle := filepath.Join(dir, "evidence.tar.gz")
	out, errOut, code = d.cli(t, d.token, "audit", "export", "--compliance", "hipaa", "--since", since, "--until", until, "-f", bundle, "--registry-key", vkey)
	require.Equal(t, 0, code, "stdout %s stderr %s", out, errOut)

	out, errOut, code = d.cli(t, "", "audit", "verify", bundle, "--registry-key", vkey)
	require.Equal(t, 0, code, "the bundle verifies offline: stdout %s stderr %s", out, errOut)

	raw, err := os.ReadFile(bundle)
	require.NoError(t, err)
	for _, at := range []int{len(raw) / 3, len(raw) / 2, len(raw) - 20} {
		edited := bytes.Clone(raw)
		edited[at] ^= 0x40
		bad := filepath.Join(dir, fmt.Sprintf("edited-%d.tar.gz", at))
		require.NoError(t, os.WriteFile(bad, edited, 0o600))
		_, errOut, code = d.cli(t, "", "audit", "verify", bad, "--registry-key", vkey)
		require.NotEqual(t, 0, code, "a bundle edited at byte %d must not verify (%s)", at, errOut)
	}

	out, errOut, code = d.cli(t, d.token, "audit", "replay", "--registry-key", vkey)
	require.Equal(t, 0, code, "replay: stdout %s stderr %s", out, errOut)
	require.Regexp(t, `Decisions re-derived:\s+2[1-9]`, out)
	require.Regexp(t, `Mismatches:\s+0\n`, out)

	out, errOut, code = d.cli(t, d.token, "audit", "verify", "--sth", head, "--registry-key", vkey)
	require.Equal(t, 0, code, "the log only grew since the saved head: stdout %s stderr %s", out, errOut)
}
