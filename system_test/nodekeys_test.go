package system_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
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
	require.Equal(t, st.NodeKeyId, before.KeyId, "the decision names the node's own key")

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

	// A thief with the node's key file signs a statement dated after T.
	stolen, err := attestation.LoadPrivateKey(filepath.Join(p.d.srv.DataDir, attestation.NodeKeyFile))
	require.NoError(t, err)
	var stmt trustfedv1.DecisionStatement
	require.NoError(t, proto.Unmarshal(before.Statement, &stmt))
	stmt.DecidedAt, stmt.ValidUntil = timestamppb.New(since.Add(time.Second)), timestamppb.New(since.Add(time.Minute))
	forged := proto.CloneOf(before)
	forged.DecidedAt, forged.ValidUntil = stmt.DecidedAt, stmt.ValidUntil
	forged.Statement, forged.Signature, err = attestation.SignDecision(stolen, &stmt)
	require.NoError(t, err)
	_, err = client.VerifyDecision(forged, keys, since.Add(2*time.Second))
	require.True(t, errors.Is(err, attestation.ErrDecisionKey), "signed with the revoked key after T: %v", err)
}
