package attestation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// certFixture is three endorsed registry nodes and a certified checkpoint
// text made at t.
type certFixture struct {
	t       time.Time
	signers map[string]*FileSigner
	keys    []*trustfedv1.RegistryKey
	text    []byte
}

func newCertFixture(t testing.TB) certFixture {
	t.Helper()
	f := certFixture{t: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC), signers: map[string]*FileSigner{}}
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		_, key, err := ed25519.GenerateKey(nil)
		require.NoError(t, err)
		s, err := NewFileSigner(key)
		require.NoError(t, err)
		f.signers[id] = s
		f.keys = append(f.keys, &trustfedv1.RegistryKey{NodeId: id, KeyId: s.KeyID(), PublicKey: s.Public(),
			ValidFrom: timestamppb.New(f.t.Add(-time.Hour)), ValidUntil: timestamppb.New(f.t.Add(time.Hour))})
	}
	cp := Checkpoint{Origin: "trustfed.test/audit", Size: 9, Root: bytes.Repeat([]byte{3}, 32),
		State: &CheckpointState{Index: 77, Commitment: bytes.Repeat([]byte{5}, 32), Time: f.t}}
	f.text = cp.Marshal()
	return f
}

func (f certFixture) certify(t *testing.T, text []byte, nodes ...string) []string {
	t.Helper()
	var lines []string
	for _, n := range nodes {
		l, err := CertifyCheckpoint(context.Background(), text, n, f.signers[n])
		require.NoError(t, err)
		lines = append(lines, l)
	}
	return lines
}

func TestCertifiedCheckpointQuorumAccepted(t *testing.T) {
	f := newCertFixture(t)
	signed := AssembleNote(f.text, f.certify(t, f.text, "node-1", "node-3"))
	cp, nodes, err := VerifyCertifiedCheckpoint(signed, "trustfed.test/audit", f.keys)
	require.NoError(t, err)
	require.Equal(t, []string{"node-1", "node-3"}, nodes)
	require.Equal(t, uint64(9), cp.Size)
	require.Equal(t, uint64(77), cp.State.Index)
	require.Equal(t, bytes.Repeat([]byte{5}, 32), cp.State.Commitment)
	require.True(t, cp.State.Time.Equal(f.t))

	// A witness cosignature added later is ignored, not an error.
	witness := newTestKey(t)
	cosigned, _, err := Cosign(signed, "acme", witness)
	require.NoError(t, err)
	_, nodes, err = VerifyCertifiedCheckpoint(cosigned, "trustfed.test/audit", f.keys)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
}

func TestCertifiedCheckpointBelowQuorumRefused(t *testing.T) {
	f := newCertFixture(t)
	// One of three: below floor(3/2)+1 = 2.
	one := AssembleNote(f.text, f.certify(t, f.text, "node-2"))
	_, nodes, err := VerifyCertifiedCheckpoint(one, "trustfed.test/audit", f.keys)
	require.ErrorIs(t, err, ErrCertification)
	require.ErrorContains(t, err, "need 2 of the 3")
	require.Equal(t, []string{"node-2"}, nodes)

	// The same node signing twice (two lines) is still one node.
	twice := AssembleNote(f.text, append(f.certify(t, f.text, "node-2"), f.certify(t, f.text, "node-2")...))
	_, _, err = VerifyCertifiedCheckpoint(twice, "trustfed.test/audit", f.keys)
	require.ErrorIs(t, err, ErrCertification)

	// A node whose key expired before the checkpoint's time does not count,
	// and the quorum is taken over the nodes with a valid key (2 of 2 then).
	keys := cloneKeys(f.keys)
	keys[2].ValidUntil = timestamppb.New(f.t.Add(-time.Minute))
	withExpired := AssembleNote(f.text, f.certify(t, f.text, "node-1", "node-3"))
	_, _, err = VerifyCertifiedCheckpoint(withExpired, "trustfed.test/audit", keys)
	require.ErrorIs(t, err, ErrCertification)
	require.ErrorContains(t, err, "need 2 of the 2")

	// A revoked key does not count either.
	keys = cloneKeys(f.keys)
	keys[0].RevokeTime = timestamppb.New(f.t.Add(-time.Minute))
	_, _, err = VerifyCertifiedCheckpoint(withExpired, "trustfed.test/audit", keys)
	require.ErrorIs(t, err, ErrCertification)

	// No node keys at all: nothing can be certified.
	_, _, err = VerifyCertifiedCheckpoint(withExpired, "trustfed.test/audit", nil)
	require.ErrorIs(t, err, ErrCertification)
}

func TestCertifiedCheckpointTamperedRefused(t *testing.T) {
	f := newCertFixture(t)
	signed := AssembleNote(f.text, f.certify(t, f.text, "node-1", "node-2", "node-3"))

	// Another commitment under the same signatures.
	other := Checkpoint{Origin: "trustfed.test/audit", Size: 9, Root: bytes.Repeat([]byte{3}, 32),
		State: &CheckpointState{Index: 77, Commitment: bytes.Repeat([]byte{6}, 32), Time: f.t}}
	_, sigs, err := SplitNote(signed)
	require.NoError(t, err)
	_, _, err = VerifyCertifiedCheckpoint(AssembleNote(other.Marshal(), sigs), "trustfed.test/audit", f.keys)
	require.ErrorIs(t, err, ErrCertification)

	// A checkpoint without the state line (registry-key style) is not certified.
	plain := Checkpoint{Origin: "trustfed.test/audit", Size: 9, Root: bytes.Repeat([]byte{3}, 32)}
	_, _, err = VerifyCertifiedCheckpoint(AssembleNote(plain.Marshal(), sigs), "trustfed.test/audit", f.keys)
	require.ErrorIs(t, err, ErrCertification)

	// Another log's name.
	_, _, err = VerifyCertifiedCheckpoint(signed, "other.test/audit", f.keys)
	require.ErrorContains(t, err, "want \"other.test/audit\"")

	// A node signature is not a plain ed25519 note signature: the same
	// key's note signature (no purpose prefix) does not verify as one.
	raw := ed25519.Sign(ed25519.NewKeyFromSeed(f.signers["node-1"].key.Seed()), f.text)
	require.False(t, nodeVerifier{pub: f.signers["node-1"].Public()}.Verify(f.text, raw))
}

func TestCheckpointStateLineRoundTrip(t *testing.T) {
	f := newCertFixture(t)
	cp, err := ParseCheckpoint(f.text)
	require.NoError(t, err)
	require.Equal(t, f.text, cp.Marshal())
	for _, bad := range []string{
		"o\n1\n" + b64(32) + "\ntrustfed-state 0 " + b64(32) + " 2026-12-07T08:00:00Z\n",
		"o\n1\n" + b64(32) + "\ntrustfed-state 5 " + b64(31) + " 2026-12-07T08:00:00Z\n",
		"o\n1\n" + b64(32) + "\ntrustfed-state 5 " + b64(32) + " yesterday\n",
		"o\n1\n" + b64(32) + "\ntrustfed-state 5 " + b64(32) + "\n",
	} {
		_, err := ParseCheckpoint([]byte(bad))
		require.Error(t, err, bad)
	}
}

func b64(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }

func cloneKeys(ks []*trustfedv1.RegistryKey) []*trustfedv1.RegistryKey {
	out := make([]*trustfedv1.RegistryKey, len(ks))
	for i, k := range ks {
		out[i] = proto.CloneOf(k)
	}
	return out
}

// BenchmarkVerifyCertifiedCheckpoint: what a replica, member or witness
// pays to verify a checkpoint certified by 3 of 3 nodes.
func BenchmarkVerifyCertifiedCheckpoint(b *testing.B) {
	f := newCertFixture(b)
	var lines []string
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		l, err := CertifyCheckpoint(context.Background(), f.text, n, f.signers[n])
		if err != nil {
			b.Fatal(err)
		}
		lines = append(lines, l)
	}
	signed := AssembleNote(f.text, lines)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := VerifyCertifiedCheckpoint(signed, "trustfed.test/audit", f.keys); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCertifyCheckpoint: one node's signature line.
func BenchmarkCertifyCheckpoint(b *testing.B) {
	f := newCertFixture(b)
	for b.Loop() {
		if _, err := CertifyCheckpoint(context.Background(), f.text, "node-1", f.signers["node-1"]); err != nil {
			b.Fatal(err)
		}
	}
}
