package state

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func newRegistryNodeKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return pub, priv
}

// TestNodeKeyEndorsementNeedsTheAdminQuorum: an endorsement signed by a
// key that is not an admin's is refused; with one approval of a quorum of
// two the key is not endorsed; the second admin's approval endorses it.
func TestNodeKeyEndorsementNeedsTheAdminQuorum(t *testing.T) {
	h := twoAdminFederation(t)
	pub, _ := newRegistryNodeKey(t)
	endorse := testutil.EndorseNodeKey("node-1", pub, h.now, h.now.Add(24*time.Hour))

	res := h.apply(h.proposal(endorse, carol), "")
	require.ErrorIs(t, res.Err, ErrPermissionDenied, "forged endorsement: carol is not an admin")
	require.Empty(t, h.read().NodeKeys(""))

	h.mustChange(endorse) // alice: one approval of two
	require.Empty(t, h.read().NodeKeys(""), "one admin cannot endorse a node key")
	_, err := h.read().NodeSigningKey("node-1", h.now)
	require.ErrorIs(t, err, ErrFailedPrecondition)
	require.ErrorContains(t, err, "trustfed key endorse node-1")

	pending, _ := h.read().AdminChanges("", 10, true, h.now)
	require.Len(t, pending, 1)
	require.NoError(t, h.approve(pending[0].Id, bob).Err)
	k, err := h.read().NodeSigningKey("node-1", h.now)
	require.NoError(t, err)
	require.Equal(t, attestation.Fingerprint(pub), k.KeyId)
	require.Equal(t, pending[0].Id, k.EndorsedByChange)
	require.True(t, bytes.Equal(pub, k.PublicKey))
}

// TestNodeKeyEndorsementRefusesBadKeys: malformed endorsements name the
// field; a key expired by the time the change takes effect, and a key
// already endorsed (for any node) are refused.
func TestNodeKeyEndorsementRefusesBadKeys(t *testing.T) {
	h := newHarness(t)
	pub, _ := newRegistryNodeKey(t)
	for name, tc := range map[string]struct {
		c     *trustfedv1.AdminChange
		field string
	}{
		"short key":       {testutil.EndorseNodeKey("node-1", pub[:5], h.now, h.now.Add(time.Hour)), "public_key"},
		"no node":         {testutil.EndorseNodeKey("", pub, h.now, h.now.Add(time.Hour)), "node_id"},
		"until <= from":   {testutil.EndorseNodeKey("node-1", pub, h.now, h.now), "valid_until"},
		"too long":        {testutil.EndorseNodeKey("node-1", pub, h.now, h.now.Add(MaxNodeKeyValidity+time.Second)), "valid_until"},
		"revoke no since": {&trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_RevokeNodeKey{RevokeNodeKey: &trustfedv1.RevokeNodeKeyChange{NodeId: "node-1", KeyId: "SHA256:x"}}}, "since"},
	} {
		res := h.change(tc.c)
		require.ErrorIs(t, res.Err, ErrInvalidArgument, name)
		require.ErrorContains(t, res.Err, tc.field, name)
	}
	res := h.change(testutil.EndorseNodeKey("node-1", pub, h.now.Add(-2*time.Hour), h.now.Add(-time.Hour)))
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "an expired key is never endorsed")
	require.Empty(t, h.read().NodeKeys(""))

	h.mustChange(testutil.EndorseNodeKey("node-1", pub, h.now, h.now.Add(time.Hour)))
	res = h.change(testutil.EndorseNodeKey("node-2", pub, h.now, h.now.Add(time.Hour)))
	require.ErrorIs(t, res.Err, ErrAlreadyExists, "one key names one node")
}

// TestNodeKeyRotationAndRevocation: a successor endorsed while the first
// key is valid takes over once valid; signatures by the first key made
// while it was valid keep verifying; revoking it since T refuses its
// signatures at/after T and keeps those before T; an expired key refuses
// signatures made after valid_until.
func TestNodeKeyRotationAndRevocation(t *testing.T) {
	h := newHarness(t)
	t0 := h.now
	pub1, priv1 := newRegistryNodeKey(t)
	pub2, priv2 := newRegistryNodeKey(t)
	h.mustChange(testutil.EndorseNodeKey("node-1", pub1, t0, t0.Add(48*time.Hour)))
	h.mustChange(testutil.EndorseNodeKey("node-1", pub2, t0.Add(24*time.Hour), t0.Add(96*time.Hour)))
	id1, id2 := attestation.Fingerprint(pub1), attestation.Fingerprint(pub2)

	k, err := h.read().NodeSigningKey("node-1", t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, id1, k.KeyId, "the successor is not valid yet")
	k, err = h.read().NodeSigningKey("node-1", t0.Add(25*time.Hour))
	require.NoError(t, err)
	require.Equal(t, id2, k.KeyId, "the node switches to the successor once it is valid")
	require.Len(t, h.read().NodeKeys("node-1"), 2, "the key history keeps both")

	msg := []byte("statement")
	sig1 := attestation.Sign(priv1, attestation.PurposeDecision, msg)
	sig2 := attestation.Sign(priv2, attestation.PurposeDecision, msg)
	verify := func(id string, sig []byte, at time.Time) error {
		_, err := h.read().VerifyNodeSignature(id, attestation.PurposeDecision, msg, sig, at)
		return err
	}
	require.NoError(t, verify(id1, sig1, t0.Add(time.Hour)), "old signature keeps verifying after rotation")
	require.ErrorIs(t, verify(id1, sig1, t0.Add(49*time.Hour)), attestation.ErrNodeKey, "expired at signing time")
	require.ErrorIs(t, verify(id2, sig2, t0.Add(time.Hour)), attestation.ErrNodeKey, "not yet valid at signing time")
	require.ErrorIs(t, verify(id1, sig2, t0.Add(time.Hour)), attestation.ErrSignature, "another key's signature")
	require.ErrorIs(t, verify("SHA256:unknown", sig1, t0.Add(time.Hour)), attestation.ErrNodeKey, "unknown key")

	since := t0.Add(30 * time.Minute)
	res := h.change(testutil.RevokeNodeKey("node-2", id1, since))
	require.ErrorIs(t, res.Err, ErrNotFound, "the key is node-1's, not node-2's")
	h.mustChange(testutil.RevokeNodeKey("node-1", id1, since))
	require.NoError(t, verify(id1, sig1, since.Add(-time.Nanosecond)), "signed before T: still verifies")
	require.ErrorIs(t, verify(id1, sig1, since), attestation.ErrNodeKey, "signed at T: refused")
	require.ErrorIs(t, verify(id1, sig1, since.Add(time.Minute)), attestation.ErrNodeKey, "signed after T: refused")
	res = h.change(testutil.RevokeNodeKey("node-1", id1, since.Add(time.Minute)))
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "a revocation is never weakened")
	h.mustChange(testutil.RevokeNodeKey("node-1", id1, t0))
	require.ErrorIs(t, verify(id1, sig1, t0.Add(time.Minute)), attestation.ErrNodeKey, "moved earlier")
}

// TestNodeKeysSurviveSnapshotAndHoldNoPrivateKey: the key history travels
// in snapshots (a restored replica verifies the same signatures) and
// neither the log entry nor the snapshot holds the node's private key.
func TestNodeKeysSurviveSnapshotAndHoldNoPrivateKey(t *testing.T) {
	h := newHarness(t)
	pub, priv := newRegistryNodeKey(t)
	endorse := h.proposal(testutil.EndorseNodeKey("node-1", pub, h.now, h.now.Add(time.Hour)), alice)
	h.ensureAdmin()
	entry, err := Encode(endorse, EnvelopeMeta{Time: h.now, Principal: "token:test"})
	require.NoError(t, err)
	require.NoError(t, h.applyRaw(entry).Err)

	var snap bytes.Buffer
	s, err := h.fsm.Snapshot()
	require.NoError(t, err)
	require.NoError(t, s.Persist(&snap))
	for name, b := range map[string][]byte{"log entry": entry, "snapshot": snap.Bytes()} {
		require.False(t, bytes.Contains(b, priv.Seed()), "%s holds the private seed", name)
		require.False(t, bytes.Contains(b, priv), "%s holds the expanded private key", name)
	}
	restored := newHarness(t)
	require.NoError(t, restored.fsm.Restore(bytes.NewReader(snap.Bytes())))
	require.Equal(t, len(h.read().NodeKeys("")), len(restored.read().NodeKeys("")))
	_, err = restored.read().NodeSigningKey("node-1", h.now)
	require.NoError(t, err)
}

// TestMigrationFromTheRegistryKey: a log of the old format (the cluster's
// registry key stored by PUT_SIGNING_KEY) replays unchanged, and its key is
// published without a bound; from the first node key endorsement on, the
// registry key's published validity ends at that endorsement, so a
// decision it signs dated later is refused while older ones verify.
func TestMigrationFromTheRegistryKey(t *testing.T) {
	h := newHarness(t)
	_, legacy := newRegistryNodeKey(t)
	legacyID := attestation.Fingerprint(legacy.Public().(ed25519.PublicKey))
	h.must(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: legacyID, PrivateSeed: legacy.Seed(), CreateTime: timestamppb.New(h.now)}})
	require.False(t, h.read().NodeKeysInForce())
	keys, err := h.read().PublishedKeys()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Nil(t, keys[0].ValidUntil, "before node keys the registry key is unbounded")

	h.now = h.now.Add(time.Hour)
	retired := h.now
	pub, _ := newRegistryNodeKey(t)
	h.mustChange(testutil.EndorseNodeKey("node-1", pub, h.now, h.now.Add(24*time.Hour)))
	require.True(t, h.read().NodeKeysInForce())
	keys, err = h.read().PublishedKeys()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	published := attestation.DecisionKeys{}
	for _, k := range keys {
		published[k.KeyId] = k
	}
	require.Empty(t, published[legacyID].NodeId)
	require.True(t, published[legacyID].ValidUntil.AsTime().Equal(retired), "the registry key's validity ends at the first endorsement")
	require.Equal(t, "node-1", published[attestation.Fingerprint(pub)].NodeId)
	require.NoError(t, attestation.CheckRegistryKeyAt(published[legacyID], retired.Add(-time.Second)))
	require.ErrorIs(t, attestation.CheckRegistryKeyAt(published[legacyID], retired), attestation.ErrNodeKey)
}
