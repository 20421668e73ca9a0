package system_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
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
	keys, err := c.Keys(ctxT(t))
	require.NoError(t, err)
	cp, err := client.VerifyTreeHeadWithKeys(sth, keys, nil, 0)
	require.NoError(t, err)
	return sth, cp, sth.VerifierKey
}

// Every decision a member receives is in the audit log before it is
// returned, on the leader and on followers, and provably so: its entry is
// the signed decision, included in a signed checkpoint every node serves.
func TestE03AuditedDecisionsInACluster(t *testing.T) {
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
	keys, err := n1.Keys(ctxT(t))
	require.NoError(t, err)
	lcp, err := client.VerifyTreeHeadWithKeys(mustHead(t, n1, list.TreeSize), keys, nil, 0)
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

// flipAuditEntryBit flips one bit in the middle of entry seq's leaf bytes
// in an open audit.db, in registry/audit's format 2: bucket "entries" maps
// the seq of a chunk's first entry to the chunk, count (2 bytes) ‖ count ×
// (attrs end ‖ record end, 4 bytes each, from the first record) ‖ records
// of time ‖ labels ‖ leaf bytes.
func flipAuditEntryBit(tx *bolt.Tx, seq uint64) error {
	b := tx.Bucket([]byte("entries"))
	if b == nil {
		return errors.New("no entries bucket")
	}
	c := b.Cursor()
	key := binary.BigEndian.AppendUint64(nil, seq)
	k, v := c.Seek(key)
	if k == nil {
		k, v = c.Last()
	} else if !bytes.Equal(k, key) {
		k, v = c.Prev() // the chunk starting before seq
	}
	if len(k) != 8 || binary.BigEndian.Uint64(k) > seq || len(v) < 2 {
		return fmt.Errorf("no chunk holds entry %d", seq)
	}
	i, n := seq-binary.BigEndian.Uint64(k), uint64(binary.BigEndian.Uint16(v))
	head := 2 + 8*n
	if i >= n || uint64(len(v)) < head {
		return fmt.Errorf("the chunk at %x does not hold entry %d", k, seq)
	}
	start := head + uint64(binary.BigEndian.Uint32(v[2+8*i:]))
	end := head + uint64(binary.BigEndian.Uint32(v[2+8*i+4:]))
	if start >= end || end > uint64(len(v)) {
		return fmt.Errorf("entry %d: leaf bytes [%d, %d) of a %d-byte chunk", seq, start, end, len(v))
	}
	chunk := bytes.Clone(v)
	chunk[start+(end-start)/2] ^= 0x01
	return b.Put(bytes.Clone(k), chunk)
}

// stoppedAuditedDev starts a dev server, audits a few commands, waits for a
// checkpoint of them and stops the server; it returns the checkpoint and
// the registry's verifier key. The caller changes the audit file and
// restarts the server.
func stoppedAuditedDev(t *testing.T) (*devServer, attestation.Checkpoint, string) {
	t.Helper()
	d, c, fed := startFederation(t)
	enrol(t, c, fed, "clinic", 3)
	_, before, vkey := verifiedHead(t, c, 5)
	require.NoError(t, d.srv.Stop())
	return d, before, vkey
}

// A node whose audit log was rewritten on disk is detected: re-applying the
// checkpoint the cluster certified, its log no longer has the certified
// root, so it marks itself diverged and fails closed (/healthz, /readyz).
func TestR8TamperedAuditLogIsDetected(t *testing.T) {
	d, before, _ := stoppedAuditedDev(t)
	db, err := bolt.Open(filepath.Join(d.srv.DataDir, "audit", "audit.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return flipAuditEntryBit(tx, 3) // one bit of one entry
	}))
	require.NoError(t, db.Close())
	d.srv.Restart()

	// Its checkpoints are certified by its node key (a quorum of one): a
	// log that no longer has the certified root is a node that diverged
	// from what the cluster certified. It fails closed: it answers
	// nothing, /healthz and /readyz say so, and the marker names the root.
	testutil.Eventually(t, 30*time.Second, "the node reports it diverged", func() error {
		if code, reason := readyz(d.http, d.srv.Addrs.HTTPAddr); code != http.StatusServiceUnavailable || !strings.Contains(reason, "diverged") {
			return fmt.Errorf("readyz %d: %s", code, reason)
		}
		return nil
	})
	resp, err := d.http.Get("https://" + d.srv.Addrs.HTTPAddr + "/healthz") // new ports after the restart
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	marker, err := os.ReadFile(filepath.Join(d.srv.DataDir, registry.DivergenceMarker))
	require.NoError(t, err)
	require.Contains(t, string(marker), "certified the audit tree of")
	require.NotEmpty(t, before.Root)
}

// A node whose audit file cannot be opened (damaged by a power loss, or
// written in an older layout) moves it aside and rebuilds its log from the
// Raft log: the rebuilt log proves against the checkpoint signed before,
// and the node reports no fault.
func TestUnreadableAuditLogIsRebuilt(t *testing.T) {
	d, before, vkey := stoppedAuditedDev(t)
	path := filepath.Join(d.srv.DataDir, "audit", "audit.db")
	require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("not a bbolt file "), 512), 0o600))
	d.srv.Restart()
	c := dial(t, d.srv, d.caFile, d.token)
	waitServing(t, c)

	aside, err := filepath.Glob(path + ".unreadable-*")
	require.NoError(t, err)
	require.Len(t, aside, 1, "the unreadable file is kept for inspection")
	after, cp, _ := verifiedHead(t, c, before.Size)
	require.Equal(t, vkey, after.VerifierKey)
	p, err := c.Audit().GetConsistencyProof(ctxT(t), &trustfedv1.GetConsistencyProofRequest{First: before.Size, Second: cp.Size})
	require.NoError(t, err)
	require.NoError(t, client.VerifyConsistency(before, cp, p.Hashes), "the rebuilt log extends the history signed before")
	st, err := c.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	require.Empty(t, st.AuditFault)
}

// BenchmarkAuditedCheck compares, in one run, checks whose decision is
// committed to the audit log before it is returned with the same checks
// answered without it (-unaudited-decisions, dev only): the cost of
// auditing every decision (goal: under 20% of throughput).
//
// Each caller count runs both modes in turn. Throughput is what the server
// sustains when callers keep it busy (1024 in flight); with 64 callers an
// audited check holds its caller for a disk commit, so that run measures
// how latency limits a small pool of callers (Little's law), not capacity.
func BenchmarkAuditedCheck(b *testing.B) {
	for _, callers := range []int{64, 1024} {
		for _, mode := range []struct {
			name  string
			extra []string
		}{{"audited", nil}, {"unaudited", []string{"-unaudited-decisions"}}} {
			b.Run(fmt.Sprintf("callers=%d/%s", callers, mode.name), func(b *testing.B) {
				benchChecks(b, callers, mode.extra)
			})
		}
	}
}

// benchChecks runs b.N checks from `callers` goroutines of one member node
// against a dev server started with extra flags.
func benchChecks(b *testing.B, callers int, extra []string) {
	member := benchMember(b, extra...)
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
	start := time.Now()
	runChecks(b, member, req, max(1, callers/runtime.GOMAXPROCS(0)))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "checks/s")
}

// The evidence bundle of a HIPAA period exported from a live registry
// verifies offline with public keys only; one byte changed anywhere in it
// fails verification; replaying the whole log re-derives every decision
// with no mismatch; a tree head kept earlier is proven a prefix of today's.
func TestE01ToE07EvidenceBundleEndToEnd(t *testing.T) {
	p := startPair(t, "clinic", 3, "lab", 3, []string{"task_send", "context_share"})
	d, c, clinic := p.d, p.admin, p.member
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
	// The dev server certifies its checkpoints with its endorsed node key:
	// there is no registry key to pin (vkey is ""), the verbs verify the
	// certification against GET /v1/keys.
	_, _, vkey := verifiedHead(t, c, last+1)
	require.Empty(t, vkey)
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
