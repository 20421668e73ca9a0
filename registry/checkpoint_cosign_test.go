package registry

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const certifyOrigin = "trustfed.test/audit"

// certifyRig is one registry server over a real state machine with an
// on-disk audit log and its own endorsed node key.
type certifyRig struct {
	s     *Server
	fsm   *state.FSM
	raft  *directRaft
	log   *audit.Log
	now   time.Time
	admin testutil.Admin
}

func newCertifyRig(t *testing.T) *certifyRig {
	t.Helper()
	return newCertifyRigWith(t, false)
}

// newCertifyRigWith is newCertifyRig; with cosign, the server certifies
// its decisions through its own cosigner (a quorum of one node), which
// runs until the test ends.
func newCertifyRigWith(t *testing.T, cosign bool) *certifyRig {
	t.Helper()
	dir := t.TempDir()
	l, err := audit.Open(filepath.Join(dir, "audit.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
	require.NoError(t, fsm.AttachAudit(AuditLog{Log: l}))
	ring, _, err := attestation.OpenFileKeyring(dir)
	require.NoError(t, err)
	r := &certifyRig{fsm: fsm, raft: &directRaft{fsm: fsm}, log: l, now: time.Now().UTC()}
	var cosigner *Cosigner
	if cosign {
		cosigner = NewCosigner("n1", certifyOrigin, ring, fsm.Store(), nil)
		fsm.OnDecisionBatch(cosigner.Enqueue)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); cosigner.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	r.s, err = New(Config{NodeID: "n1", Store: fsm.Store(), Raft: r.raft, Peers: NewPeers(nil), Verifier: attestation.Verifier{},
		Clock: func() time.Time { return r.now }, Audit: l, AuditOrigin: certifyOrigin, CommitmentAt: fsm.CommitmentAtAs, NodeKeys: ring, Cosigner: cosigner})
	require.NoError(t, err)

	admin := testutil.NewAdmin("alice")
	r.admin = admin
	r.must(t, &commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: admin.ID, Name: "Alice", PublicKey: admin.Public()}, ApprovalsRequired: 1})
	raw := testutil.ChangeBytes(t, testutil.EndorseNodeKey("n1", ring.Primary().Public(), r.now.Add(-time.Minute), r.now.Add(time.Hour)), r.now)
	r.must(t, &commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)})
	require.True(t, fsm.Store().Read().NodeKeysInForce())
	return r
}

func (r *certifyRig) must(t *testing.T, cmd proto.Message) {
	t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: r.now, Principal: "token:test"})
	require.NoError(t, err)
	res, err := r.raft.Apply(context.Background(), b)
	require.NoError(t, err)
	require.NoError(t, res.Response.(state.Result).Err)
	r.fsm.EndBatch()
}

// text is the checkpoint text of this node's own log and state at now,
// changed by edit.
func (r *certifyRig) text(t *testing.T, edit func(*attestation.Checkpoint)) []byte {
	t.Helper()
	rd := r.fsm.Store().Read()
	commitment, err := rd.Commitment()
	require.NoError(t, err)
	root, err := r.log.RootAt(r.log.Size())
	require.NoError(t, err)
	cp := attestation.Checkpoint{Origin: certifyOrigin, Size: r.log.Size(), Root: root,
		State: &attestation.CheckpointState{Index: rd.Index(), Commitment: commitment, Time: r.now.Truncate(time.Second)}}
	if edit != nil {
		edit(&cp)
	}
	return cp.Marshal()
}

// TestCosignCheckpointComparesBeforeSigning: a server certifies a
// checkpoint only if it reproduces both the audit root and the state
// commitment; otherwise it refuses with FAILED_PRECONDITION saying which
// differs, and it never certifies a checkpoint dated far from its clock.
func TestCosignCheckpointComparesBeforeSigning(t *testing.T) {
	r := newCertifyRig(t)
	ctx := context.Background()
	peer := &peerService{Server: r.s}

	text := r.text(t, nil)
	resp, err := peer.CosignCheckpoint(ctx, &peerv1.CosignCheckpointRequest{Text: text})
	require.NoError(t, err)
	require.Equal(t, "n1", resp.NodeId)
	cp, nodes, err := attestation.VerifyCertifiedCheckpoint(attestation.AssembleNote(text, []string{resp.SignatureLine}), certifyOrigin, r.fsm.Store().Read().NodeKeysForVerify())
	require.NoError(t, err, "its signature certifies the checkpoint (a quorum of one)")
	require.Equal(t, []string{"n1"}, nodes)
	require.Equal(t, r.log.Size(), cp.Size)

	for name, tc := range map[string]struct {
		edit func(*attestation.Checkpoint)
		want string
	}{
		"another root":       {func(c *attestation.Checkpoint) { c.Root = make([]byte, 32) }, "audit root at size"},
		"another commitment": {func(c *attestation.Checkpoint) { c.State.Commitment = make([]byte, 32) }, "state commitment at index"},
	} {
		_, err := peer.CosignCheckpoint(ctx, &peerv1.CosignCheckpointRequest{Text: r.text(t, tc.edit)})
		require.Equal(t, codes.FailedPrecondition, status.Code(toStatus(nil, "/cosign", err)), "%s: %v", name, err)
		require.ErrorContains(t, err, tc.want, name)
	}
	_, err = peer.CosignCheckpoint(ctx, &peerv1.CosignCheckpointRequest{Text: r.text(t, func(c *attestation.Checkpoint) { c.Origin = "other/audit" })})
	require.ErrorIs(t, err, state.ErrInvalidArgument)
	// Not a difference of state (a skewed clock is no divergence): refused
	// as invalid.
	_, err = peer.CosignCheckpoint(ctx, &peerv1.CosignCheckpointRequest{Text: r.text(t, func(c *attestation.Checkpoint) { c.State.Time = c.State.Time.Add(-time.Hour) })})
	require.ErrorIs(t, err, state.ErrInvalidArgument)
	require.ErrorContains(t, err, "from this server's clock")
}
