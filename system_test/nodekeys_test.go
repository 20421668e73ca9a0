package system_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestNodeKeyRevokedSinceT: once the admin quorum revokes the answering
// node's key since T, the node stops signing (UNAVAILABLE, naming the
// command that endorses a key) instead of signing with an unendorsed key
// or the registry key; a decision it signed before T keeps verifying
// against the key history in GET /v1/keys, and a statement signed with the
// (stolen) key at or after T is refused.
func TestNodeKeyRevokedSinceT(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "bank-a", 4, "bank-b", 2, []string{"ping"})
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "ping"}
	before, err := p.member.Registry().CheckInteraction(ctxT(t), req)
	require.NoError(t, err)
	st, err := p.admin.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	require.True(t, st.NodeKeyEndorsed)
	require.Equal(t, []string{st.NodeKeyId}, vouchingKeys(before), "the node vouches with its own key")

	since := time.Now()
	require.True(t, before.DecidedAt.AsTime().Before(since))
	p.d.admins.apply(t, client.RevokeNodeKey(st.NodeId, st.NodeKeyId, since), p.admin)

	_, err = p.member.Registry().CheckInteraction(ctxT(t), req)
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.ErrorContains(t, err, "trustfed key endorse "+st.NodeId)

	keys, err := p.admin.Keys(ctxT(t))
	require.NoError(t, err)
	require.NotNil(t, keys[st.NodeKeyId].GetRevokeTime())
	_, err = client.VerifyDecision(before, keys, before.DecidedAt.AsTime())
	require.NoError(t, err, "a decision signed before T keeps verifying")

	// A thief with the node's key file certifies a statement dated after T.
	stolen, err := attestation.LoadPrivateKey(filepath.Join(p.d.srv.DataDir, attestation.NodeKeyFile))
	require.NoError(t, err)
	var stmt trustfedv1.DecisionStatement
	require.NoError(t, proto.Unmarshal(before.Statement, &stmt))
	stmt.DecidedAt, stmt.ValidUntil = timestamppb.New(since.Add(time.Second)), timestamppb.New(since.Add(time.Minute))
	forged := proto.CloneOf(before)
	forged.DecidedAt, forged.ValidUntil = stmt.DecidedAt, stmt.ValidUntil
	forged.Statement, err = proto.MarshalOptions{Deterministic: true}.Marshal(&stmt)
	require.NoError(t, err)
	forged.Certificate = forgeCertificate(t, forged.Statement, before.Certificate, map[string]ed25519.PrivateKey{st.NodeId: stolen})
	_, err = client.VerifyDecision(forged, keys, since.Add(2*time.Second))
	require.True(t, errors.Is(err, attestation.ErrNotCertified), "certified with the revoked key after T: %v", err)
	require.ErrorContains(t, err, "no registry node held a key valid at", "the only node key is revoked at that time")
}

// TestNoPrivateNodeKeyInClusterData: in a 3-node cluster whose node keys
// were endorsed (the bootstrapping node's at bootstrap, the others by the
// admin quorum) and that never had a cluster-wide registry key, each node signs its decisions with its own
// key (verified against GET /v1/keys), and no Raft log entry (raft.db),
// snapshot, audit log entry (audit.db) or other file of any node's data
// directory holds any node's private key, seed or expanded, or its PEM —
// only each node's own node-signing.key does.
func TestNoPrivateNodeKeyInClusterData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t, "-raft-snapshot-threshold", "8")
	n1 := c.clients["n1"]
	accredit(t, n1, c.fed, c.admins)
	enrol(t, n1, c.fed, "clinic", 3)
	enrol(t, n1, c.fed, "lab", 3)
	agree(t, n1, c.fed, "clinic", "lab", "task_send")
	clinic := c.memberClients(t, n1, "clinic")
	keys, err := n1.Keys(ctxT(t))
	require.NoError(t, err)
	for _, k := range keys {
		require.NotEmpty(t, k.NodeId, "a fresh cluster never creates a cluster-wide registry key (%s): no private key enters its state", k.KeyId)
	}
	ids := []string{"n1", "n2", "n3"}
	for _, id := range ids {
		resp, err := clinic[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{
			FromOrganizationId: "clinic", ToOrganizationId: "lab", Action: "task_send"})
		require.NoError(t, err)
		sigs := resp.GetCertificate().GetSignatures()
		require.GreaterOrEqual(t, len(sigs), 2, "a decision answered by %s is vouched for by a quorum of the three nodes", id)
		for _, s := range sigs {
			require.Equal(t, s.NodeId, keys[s.KeyId].GetNodeId(), "each node vouches with its own key")
		}
		_, err = client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
		require.NoError(t, err)
	}

	secrets := map[string][]byte{}
	for _, id := range ids {
		priv, err := attestation.LoadPrivateKey(filepath.Join(c.servers[id].DataDir, attestation.NodeKeyFile))
		require.NoError(t, err)
		keyPEM, err := attestation.MarshalPrivateKeyPEM(priv)
		require.NoError(t, err)
		secrets[id+" seed"], secrets[id+" expanded key"], secrets[id+" PEM"] = priv.Seed(), priv, keyPEM
	}
	testutil.Eventually(t, 30*time.Second, "every node wrote a snapshot", func() error {
		for _, id := range ids {
			m, _ := filepath.Glob(filepath.Join(c.servers[id].DataDir, "raft", "snapshots", "*", "state.bin"))
			if len(m) == 0 {
				return fmt.Errorf("%s: no snapshot yet", id)
			}
		}
		return nil
	})
	for _, id := range ids {
		var seen []string
		err := filepath.WalkDir(c.servers[id].DataDir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() == attestation.NodeKeyFile {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			seen = append(seen, p)
			for what, secret := range secrets {
				require.False(t, bytes.Contains(b, secret), "%s holds %s's private key", p, what)
			}
			return nil
		})
		require.NoError(t, err)
		for _, want := range []string{"raft.db", "state.bin", "audit.db"} {
			require.True(t, slices.ContainsFunc(seen, func(p string) bool { return strings.HasSuffix(p, want) }), "%s: the scan read no %s: %v", id, want, seen)
		}
	}
}

// TestNodeKeyRotationUnderLoad: a rotation as docs/keys.md describes it —
// the node's next key is written into its data directory, the admin quorum
// endorses it valid from a moment later — while a member checks in a loop:
// no check fails, the node switches to the next key once it is valid, and
// every decision, by the old key or the new one, verifies against the key
// history.
func TestNodeKeyRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "bank-a", 4, "bank-b", 2, []string{"ping"})
	st, err := p.admin.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	_, next, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, attestation.SavePrivateKey(filepath.Join(p.d.srv.DataDir, "node-signing-next.key"), next))
	nextID := attestation.Fingerprint(next.Public().(ed25519.PublicKey))

	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "ping"}
	var decisions []*trustfedv1.CheckInteractionResponse
	check := func() error {
		resp, err := p.member.Registry().CheckInteraction(ctxT(t), req)
		if err != nil {
			return err
		}
		decisions = append(decisions, resp)
		return nil
	}
	for range 5 {
		require.NoError(t, check())
	}
	from := time.Now().Add(2 * time.Second)
	p.d.admins.apply(t, client.EndorseNodeKey(st.NodeId, next.Public().(ed25519.PublicKey), from, from.Add(24*time.Hour)), p.admin)
	testutil.Eventually(t, 30*time.Second, "the node signs with its next key", func() error {
		if err := check(); err != nil {
			t.Fatalf("a check failed during the rotation: %v", err)
		}
		if last := vouchingKeys(decisions[len(decisions)-1]); !slices.Equal(last, []string{nextID}) {
			return fmt.Errorf("still signing with %s", last)
		}
		return nil
	})
	keys, err := p.admin.Keys(ctxT(t))
	require.NoError(t, err)
	var old, rotated int
	for _, d := range decisions {
		_, err := client.VerifyDecision(d, keys, d.DecidedAt.AsTime())
		require.NoError(t, err, "decision by %s", vouchingKeys(d))
		switch vouchingKeys(d)[0] {
		case st.NodeKeyId:
			old++
		case nextID:
			rotated++
		}
	}
	require.Equal(t, len(decisions), old+rotated)
	require.GreaterOrEqual(t, old, 5)
	require.GreaterOrEqual(t, rotated, 1)
	t.Logf("rotation under load: %d checks, 0 failed; %d by the old key, %d by the next", len(decisions), old, rotated)
}

// vouchingKeys are the key ids of a certified decision's signatures.
func vouchingKeys(resp *trustfedv1.CheckInteractionResponse) []string {
	var out []string
	for _, s := range resp.GetCertificate().GetSignatures() {
		out = append(out, s.KeyId)
	}
	return out
}

// forgeCertificate is what someone holding node keys can make: a
// certificate over a one-decision batch holding statement, with like's
// origin and index, signed by the given nodes' keys.
func forgeCertificate(t *testing.T, statement []byte, like *trustfedv1.DecisionCertificate, signers map[string]ed25519.PrivateKey) *trustfedv1.DecisionCertificate {
	t.Helper()
	var h trustfedv1.DecisionBatchHead
	require.NoError(t, proto.Unmarshal(like.GetBatchHead(), &h))
	tree := attestation.NewBatchTree([][]byte{statement})
	h.Size, h.Root = tree.Size(), tree.Root()
	head, err := attestation.MarshalBatchHead(&h)
	require.NoError(t, err)
	c := &trustfedv1.DecisionCertificate{BatchHead: head, LeafIndex: 0, InclusionProof: tree.Proof(0)}
	for node, key := range signers {
		c.Signatures = append(c.Signatures, &trustfedv1.BatchSignature{NodeId: node, KeyId: attestation.Fingerprint(key.Public().(ed25519.PublicKey)), Signature: attestation.Sign(key, attestation.PurposeDecisionBatch, head)})
	}
	return c
}
