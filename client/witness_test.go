package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const witnessOrigin = "trustfed.test/audit"

// auditFake is a registry that serves one audit log (which a test may
// swap for a forked one) and checks the cosignatures it is sent the way
// the registry does.
type auditFake struct {
	trustfedv1.UnimplementedAuditServiceServer
	trustfedv1.UnimplementedRegistryServiceServer

	regKey  ed25519.PrivateKey
	members map[string]ed25519.PublicKey

	mu        sync.Mutex
	tree      *testonly.Tree
	note      []byte   // the registry-signed checkpoint of tree
	cosigs    []string // cosignature lines kept for note
	submitted []*trustfedv1.AddCosignatureRequest
	proofs    [][2]uint64 // consistency proofs asked for
}

func newAuditFake(t *testing.T, members map[string]ed25519.PublicKey) *auditFake {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &auditFake{regKey: key, members: members}
}

// serve makes the fake publish a log of the given leaves.
func (f *auditFake) serve(t *testing.T, leaves ...string) {
	t.Helper()
	tree := testonly.New(rfc6962.DefaultHasher)
	for _, l := range leaves {
		tree.AppendData([]byte(l))
	}
	signer, _, err := attestation.NewCheckpointSigner(witnessOrigin, f.regKey)
	require.NoError(t, err)
	note, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: witnessOrigin, Size: tree.Size(), Root: tree.Hash()}, signer)
	require.NoError(t, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tree, f.note, f.cosigs = tree, note, nil
}

func (f *auditFake) vkey(t *testing.T) string {
	t.Helper()
	vkey, err := attestation.CheckpointVerifierKey(witnessOrigin, f.regKey.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	return vkey
}

func (f *auditFake) seen() (submitted []*trustfedv1.AddCosignatureRequest, proofs [][2]uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(submitted, f.submitted...), append(proofs, f.proofs...)
}

func (f *auditFake) GetSignedTreeHead(context.Context, *trustfedv1.GetSignedTreeHeadRequest) (*trustfedv1.GetSignedTreeHeadResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	note := append([]byte(nil), f.note...)
	for _, line := range f.cosigs {
		note = append(note, line+"\n"...)
	}
	return &trustfedv1.GetSignedTreeHeadResponse{
		Checkpoint: note, Origin: witnessOrigin, TreeSize: f.tree.Size(), RootHash: f.tree.Hash(), LogSize: f.tree.Size(),
	}, nil
}

func (f *auditFake) GetConsistencyProof(_ context.Context, req *trustfedv1.GetConsistencyProofRequest) (*trustfedv1.GetConsistencyProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proofs = append(f.proofs, [2]uint64{req.First, req.Second})
	hashes, err := f.tree.ConsistencyProof(req.First, req.Second)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &trustfedv1.GetConsistencyProofResponse{First: req.First, Second: req.Second, Hashes: hashes}, nil
}

func (f *auditFake) AddCosignature(_ context.Context, req *trustfedv1.AddCosignatureRequest) (*trustfedv1.AddCosignatureResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted = append(f.submitted, req)
	pub, ok := f.members[req.OrganizationId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "organization %q does not exist", req.OrganizationId)
	}
	text, _, _ := strings.Cut(string(f.note), "\n\n")
	if !strings.HasPrefix(string(req.Checkpoint), text+"\n\n") {
		return nil, status.Error(codes.InvalidArgument, "not the published checkpoint")
	}
	var line string
	for _, l := range strings.Split(string(req.Checkpoint), "\n") {
		if strings.HasPrefix(l, "— "+req.OrganizationId+" ") {
			if line != "" {
				return nil, status.Error(codes.InvalidArgument, "two signatures by the witness")
			}
			line = l
		}
	}
	if _, err := attestation.VerifyCosignature(f.note, line, req.OrganizationId, pub); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	f.cosigs = append(f.cosigs, line)
	return &trustfedv1.AddCosignatureResponse{TreeSize: f.tree.Size(), Witnesses: []string{req.OrganizationId}}, nil
}

// startAuditFake serves f on 127.0.0.1:0 in plaintext and returns a client.
func startAuditFake(t *testing.T, f *auditFake) *Client {
	t.Helper()
	srv := grpc.NewServer()
	trustfedv1.RegisterAuditServiceServer(srv, f)
	trustfedv1.RegisterRegistryServiceServer(srv, f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	c, err := New(context.Background(), Config{Addr: ln.Addr().String(), Insecure: true, Timeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func leaves(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("entry %d", i)
	}
	return out
}

func TestWitnessCosignsConsistentHistory(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	f := newAuditFake(t, map[string]ed25519.PublicKey{"acme": pub})
	c := startAuditFake(t, f)
	ctx := context.Background()

	// First round: nothing to compare with.
	f.serve(t, leaves(3)...)
	first, err := c.Witness(ctx, "acme", key, f.vkey(t), nil)
	require.NoError(t, err)
	require.Equal(t, uint64(3), first.Size)
	submitted, proofs := f.seen()
	require.Len(t, submitted, 1)
	require.Empty(t, proofs)

	// The log grew: the new tree head is proven to extend the first.
	f.serve(t, leaves(7)...)
	second, err := c.Witness(ctx, "acme", key, f.vkey(t), &first)
	require.NoError(t, err)
	require.Equal(t, uint64(7), second.Size)
	submitted, proofs = f.seen()
	require.Len(t, submitted, 2)
	require.Equal(t, [][2]uint64{{3, 7}}, proofs)

	// The cosignature is now served with the tree head and verifies.
	sth, err := c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{})
	require.NoError(t, err)
	got, err := VerifyTreeHead(sth, f.vkey(t), []attestation.Witness{{Name: "acme", Key: pub}}, 1)
	require.NoError(t, err)
	require.True(t, got.Equal(second))

	// Nothing new: the checkpoint carries our cosignature already.
	again, err := c.Witness(ctx, "acme", key, f.vkey(t), &second)
	require.NoError(t, err)
	require.True(t, again.Equal(second))
	submitted, proofs = f.seen()
	require.Len(t, submitted, 2, "nothing resubmitted")
	require.Len(t, proofs, 1, "a tree of the same size needs no proof")
}

func TestWitnessRefusesForkedHistory(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	f := newAuditFake(t, map[string]ed25519.PublicKey{"acme": pub})
	c := startAuditFake(t, f)
	ctx := context.Background()

	f.serve(t, leaves(4)...)
	last, err := c.Witness(ctx, "acme", key, f.vkey(t), nil)
	require.NoError(t, err)

	forked := leaves(6)
	forked[1] = "entry 1, rewritten"
	tests := []struct {
		name   string
		leaves []string
		want   string
	}{
		{"rewritten history", forked, "from 4 to 6 entries"},
		{"same size, other root", append(leaves(3), "entry 3, rewritten"), "from 4 to 4 entries"},
		{"shrunk log", leaves(2), "shrank from 4 to 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.serve(t, tt.leaves...)
			_, err := c.Witness(ctx, "acme", key, f.vkey(t), &last)
			require.ErrorIs(t, err, ErrAuditProof)
			require.ErrorContains(t, err, tt.want)
			submitted, _ := f.seen()
			require.Len(t, submitted, 1, "nothing cosigned after the first round")
		})
	}
}

func TestWitnessRefusesUnverifiedTreeHead(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	f := newAuditFake(t, map[string]ed25519.PublicKey{"acme": pub})
	c := startAuditFake(t, f)
	f.serve(t, leaves(2)...)

	// Signed by a key other than the pinned one.
	otherPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := attestation.CheckpointVerifierKey(witnessOrigin, otherPub)
	require.NoError(t, err)
	_, err = c.Witness(context.Background(), "acme", key, other, nil)
	require.ErrorIs(t, err, ErrAuditProof)

	// Not a usable key or name.
	_, err = c.Witness(context.Background(), "acme", key[:10], f.vkey(t), nil)
	require.ErrorContains(t, err, "not an ed25519 private key")
	_, err = c.Witness(context.Background(), "", key, f.vkey(t), nil)
	require.Error(t, err)

	submitted, _ := f.seen()
	require.Empty(t, submitted)
}

func TestWithoutCosignatures(t *testing.T) {
	note := []byte("o\n1\nAAAA\n\n— o abc=\n— acme old=\n— globex xyz=\n— acme-bank q=\n")
	rest, mine := withoutCosignatures(note, "acme")
	require.Equal(t, "o\n1\nAAAA\n\n— o abc=\n— globex xyz=\n— acme-bank q=\n", string(rest))
	require.Equal(t, []string{"— acme old="}, mine)
}

// GetKeys of auditFake: an older key and the fake's signing key.
func (f *auditFake) GetKeys(context.Context, *trustfedv1.GetKeysRequest) (*trustfedv1.GetKeysResponse, error) {
	old, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return &trustfedv1.GetKeysResponse{Keys: []*trustfedv1.RegistryKey{
		{KeyId: "new", PublicKey: f.regKey.Public().(ed25519.PublicKey), CreateTime: timestamppb.New(t0.Add(time.Hour))},
		{KeyId: "old", PublicKey: old, CreateTime: timestamppb.New(t0)},
	}}, nil
}

func TestRegistryVerifierKey(t *testing.T) {
	f := newAuditFake(t, nil)
	c := startAuditFake(t, f)
	f.serve(t, leaves(5)...)
	ctx := context.Background()

	vkey, err := c.RegistryVerifierKey(ctx, witnessOrigin)
	require.NoError(t, err)
	require.Equal(t, f.vkey(t), vkey, "the newest key, wherever it is listed")
	sth, err := c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{})
	require.NoError(t, err)
	_, err = VerifyTreeHead(sth, vkey, nil, 0)
	require.NoError(t, err)

	_, err = c.RegistryVerifierKey(ctx, "")
	require.Error(t, err)
}
