package registry

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A follower whose batch the leader merged into an entry answers with the
// quorum the leader handed it only when the head is the one its own
// replica computed for the entry and, with its own signature, enough
// distinct nodes signed it with keys endorsed for them; its statements
// must be the leaves the leader said. Otherwise it gathers its own round
// (here, alone among two key holders, it cannot: UNAVAILABLE).
func TestFollowerAdoptsOnlyAQuorumOverItsOwnHead(t *testing.T) {
	r := newVouchRig(t)
	ctx := context.Background()
	pub2, key2, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	r.change(t, testutil.EndorseNodeKey("n2", pub2, r.now.Add(-time.Minute), r.now.Add(time.Hour)))
	var id2 string
	for _, k := range r.fsm.Store().Read().NodeKeysForVerify() {
		if k.NodeId == "n2" {
			id2 = k.KeyId
		}
	}
	require.NotEmpty(t, id2)
	require.Equal(t, 2, quorumAt(r.fsm.Store().Read(), r.now), "n1 and n2 hold keys: both must sign")

	// The entry: the leader's decision first, then this node's merged batch.
	leaders, mine := r.decided(t, ping("acme", "initech")), r.decided(t, ping("initech", "acme"))
	b, err := state.Encode(&commandv1.AppendAudit{Events: []*commandv1.AuditEvent{leaders, mine}, NodeId: "n2", BatchId: "e1",
		Parts: []*commandv1.AuditPart{{NodeId: "n1", BatchId: "p1", Events: 1}}}, state.EnvelopeMeta{Time: r.now, Principal: "node:n2"})
	require.NoError(t, err)
	res, err := r.raft.Apply(ctx, b)
	require.NoError(t, err)
	r.fsm.EndBatch()
	index := res.Index
	own, err := r.s.cfg.Cosigner.Result(ctx, index)
	require.NoError(t, err)
	require.NotNil(t, own.head)
	sig2 := &trustfedv1.BatchSignature{NodeId: "n2", KeyId: id2, Signature: attestation.Sign(key2, attestation.PurposeDecisionBatch, own.head)}

	certify := func(leaf uint64, head []byte, sigs ...*trustfedv1.BatchSignature) ([]*trustfedv1.DecisionCertificate, error) {
		return r.s.certifyCommitted(ctx, auditCommit{index: index, merged: true, leafOffset: leaf, head: head, sigs: sigs}, []*commandv1.AuditEvent{mine})
	}
	certs, err := certify(1, own.head, sig2, own.sig)
	require.NoError(t, err)
	require.Len(t, certs, 1)
	_, err = attestation.VerifyCertificate(mine.GetDecision().Statement, certs[0], r.decisionKeys(), r.now, 2)
	require.NoError(t, err, "a certificate over this node's own head, with n2's signature")

	var other trustfedv1.DecisionBatchHead
	require.NoError(t, proto.Unmarshal(own.head, &other))
	other.Refused = []uint64{0}
	otherHead, err := attestation.MarshalBatchHead(&other)
	require.NoError(t, err)
	forged := proto.CloneOf(sig2)
	forged.Signature = attestation.Sign(key2, attestation.PurposeDecisionBatch, otherHead)
	unendorsed := proto.CloneOf(sig2)
	unendorsed.NodeId = "n3"
	for name, tc := range map[string]struct {
		leaf uint64
		head []byte
		sigs []*trustfedv1.BatchSignature
		want string
	}{
		"another head":                      {1, otherHead, []*trustfedv1.BatchSignature{forged}, "signatures it needs"},
		"n2's signature over another head":  {1, own.head, []*trustfedv1.BatchSignature{forged}, "signatures it needs"},
		"n2's key named for another node":   {1, own.head, []*trustfedv1.BatchSignature{unendorsed}, "signatures it needs"},
		"this node's own signature twice":   {1, own.head, []*trustfedv1.BatchSignature{own.sig, own.sig}, "signatures it needs"},
		"no signature but this node's":      {1, own.head, nil, "signatures it needs"},
		"another decision at the leaf said": {0, own.head, []*trustfedv1.BatchSignature{sig2}, "does not hold this node's decision as leaf 0"},
	} {
		certs, err := certify(tc.leaf, tc.head, tc.sigs...)
		require.Error(t, err, name)
		require.Equal(t, codes.Unavailable, status.Code(err), "%s: %v", name, err)
		require.ErrorContains(t, err, tc.want, name)
		for _, c := range certs {
			require.Nil(t, c, name)
		}
	}
}
