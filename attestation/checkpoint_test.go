package attestation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/stretchr/testify/require"
)

func newTestKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return k
}

func TestCheckpointSignOpen(t *testing.T) {
	key := newTestKey(t)
	s, vkey, err := NewCheckpointSigner("trustfed.test/audit", key)
	require.NoError(t, err)
	cp := Checkpoint{Origin: "trustfed.test/audit", Size: 42, Root: bytes.Repeat([]byte{7}, 32)}
	signed, err := SignCheckpoint(cp, s)
	require.NoError(t, err)

	got, err := OpenCheckpoint(signed, "trustfed.test/audit", vkey)
	require.NoError(t, err)
	require.True(t, got.Equal(cp))

	_, err = OpenCheckpoint(signed, "other.test/audit", vkey)
	require.ErrorContains(t, err, "want")

	other, _, err := NewCheckpointSigner("trustfed.test/audit", newTestKey(t))
	require.NoError(t, err)
	_, otherVkey, _ := NewCheckpointSigner("trustfed.test/audit", other.(noteSigner).key)
	_, err = OpenCheckpoint(signed, "trustfed.test/audit", otherVkey)
	require.Error(t, err, "a checkpoint signed by another key must not open")

	edited := bytes.Replace(signed, []byte("\n42\n"), []byte("\n43\n"), 1)
	_, err = OpenCheckpoint(edited, "trustfed.test/audit", vkey)
	require.Error(t, err, "an edited size must break the signature")
}

func TestCosignatures(t *testing.T) {
	key := newTestKey(t)
	s, vkey, err := NewCheckpointSigner("trustfed.test/audit", key)
	require.NoError(t, err)
	cp := Checkpoint{Origin: "trustfed.test/audit", Size: 9, Root: bytes.Repeat([]byte{1}, 32)}
	signed, err := SignCheckpoint(cp, s)
	require.NoError(t, err)

	acme, bank := newTestKey(t), newTestKey(t)
	withAcme, line, err := Cosign(signed, "acme", acme)
	require.NoError(t, err)
	ts, err := VerifyCosignature(signed, line, "acme", acme.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	require.False(t, ts.IsZero())
	_, err = VerifyCosignature(signed, line, "acme", bank.Public().(ed25519.PublicKey))
	require.Error(t, err, "a cosignature must not verify under another witness key")
	_, err = VerifyCosignature(signed, line, "bank", acme.Public().(ed25519.PublicKey))
	require.Error(t, err, "a cosignature must not verify under another witness name")

	both, _, err := Cosign(withAcme, "bank", bank)
	require.NoError(t, err)
	witnesses := []Witness{{"acme", acme.Public().(ed25519.PublicKey)}, {"bank", bank.Public().(ed25519.PublicKey)}}
	got, names, err := OpenWitnessedCheckpoint(both, "trustfed.test/audit", vkey, witnesses, 2)
	require.NoError(t, err)
	require.True(t, got.Equal(cp))
	require.ElementsMatch(t, []string{"acme", "bank"}, names)

	_, _, err = OpenWitnessedCheckpoint(withAcme, "trustfed.test/audit", vkey, witnesses, 2)
	require.ErrorContains(t, err, "need 2")

	// A cosignature over another tree (a split view) does not count for this one.
	forked := Checkpoint{Origin: cp.Origin, Size: 9, Root: bytes.Repeat([]byte{2}, 32)}
	forkedSigned, err := SignCheckpoint(forked, s)
	require.NoError(t, err)
	_, forkLine, err := Cosign(forkedSigned, "bank", bank)
	require.NoError(t, err)
	_, err = VerifyCosignature(signed, forkLine, "bank", bank.Public().(ed25519.PublicKey))
	require.Error(t, err)
	_, _, err = OpenWitnessedCheckpoint(append(bytes.Clone(withAcme), []byte(forkLine+"\n")...), "trustfed.test/audit", vkey, witnesses, 1)
	require.Error(t, err, "an invalid cosignature by a trusted witness is an error")
}

func TestParseCheckpoint(t *testing.T) {
	cp := Checkpoint{Origin: "trustfed.example/audit", Size: 42, Root: bytes.Repeat([]byte{7}, 32)}
	for _, bad := range []string{"", "o\n", "o\nx\nAAAA\n", "o\n01\n" + "AAAA\n", "\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"} {
		_, err := ParseCheckpoint([]byte(bad))
		require.Error(t, err, "%q", bad)
	}
	withExt, err := ParseCheckpoint(append(cp.Marshal(), "extension line\n"...))
	require.NoError(t, err)
	require.True(t, withExt.Equal(cp))
}
