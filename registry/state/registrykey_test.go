package state

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestRetireRegistrySeed: a cluster created before node keys keeps its
// registry seed until node keys are in force; then RETIRE_REGISTRY_SEED
// removes it from the state (and so from the next snapshot), while the
// registry key's public half stays in the published key history (old
// signatures keep verifying) and GDPR pseudonyms stay the same. No private
// key can enter the state again.
func TestRetireRegistrySeed(t *testing.T) {
	h := newHarness(t)
	_, legacy := newRegistryNodeKey(t)
	legacyID := attestation.Fingerprint(legacy.Public().(ed25519.PublicKey))
	h.must(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: legacyID, PrivateSeed: legacy.Seed(), CreateTime: timestamppb.New(h.now)}})
	require.True(t, h.read().RegistrySeedHeld())

	res := h.apply(&commandv1.RetireRegistrySeed{}, "")
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "before node keys the registry key still signs")

	pub, _ := newRegistryNodeKey(t)
	h.now = h.now.Add(time.Hour)
	h.mustChange(testutil.EndorseNodeKey("node-1", pub, h.now, h.now.Add(24*time.Hour)))
	h.must(&commandv1.RetireRegistrySeed{})

	r := h.read()
	require.False(t, r.RegistrySeedHeld())
	_, ok := r.NewestSigningKey()
	require.False(t, ok, "nothing can sign with the registry key any more")
	for _, k := range r.SigningKeys() {
		require.Empty(t, k.PrivateSeed)
		require.Equal(t, pseudonymKeyOf(legacy.Seed()), k.PseudonymKey, "GDPR pseudonyms stay the same")
	}
	require.False(t, bytes.Contains(h.snapshotBytes(), legacy.Seed()), "the next snapshot holds no seed")
	keys, err := r.PublishedKeys()
	require.NoError(t, err)
	published := attestation.DecisionKeys{}
	for _, k := range keys {
		published[k.KeyId] = k
	}
	require.Equal(t, []byte(legacy.Public().(ed25519.PublicKey)), published[legacyID].GetPublicKey(), "the registry key's public half stays in GET /v1/keys")
	require.NotNil(t, published[legacyID].ValidUntil)

	require.ErrorIs(t, h.apply(&commandv1.RetireRegistrySeed{}, "").Err, ErrFailedPrecondition, "nothing left to retire")
	_, again := newRegistryNodeKey(t)
	res = h.apply(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: "k2", PrivateSeed: again.Seed()}}, "")
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "no private key enters the state again")
}

// TestBootstrapNodeKey: a fresh cluster's first leader endorses its own key
// (node keys are in force from the start, no registry key exists, the
// pseudonym key is stored); it cannot be used to add a key later, nor in a
// cluster that has a registry key.
func TestBootstrapNodeKey(t *testing.T) {
	h := newHarness(t)
	pub, _ := newRegistryNodeKey(t)
	boot := func(node string, key []byte) *commandv1.BootstrapNodeKey {
		return &commandv1.BootstrapNodeKey{NodeId: node, PublicKey: key, ValidFrom: timestamppb.New(h.now.Add(-time.Minute)),
			ValidUntil: timestamppb.New(h.now.Add(time.Hour)), PseudonymKey: bytes.Repeat([]byte{1}, 32)}
	}
	bad := boot("n1", pub)
	bad.PseudonymKey = nil
	requireFieldErr(t, h.apply(bad, "").Err, "pseudonym_key")

	h.must(boot("n1", pub))
	r := h.read()
	require.True(t, r.NodeKeysInForce())
	require.False(t, r.RegistrySeedHeld())
	k, err := r.NodeSigningKey("n1", h.now)
	require.NoError(t, err)
	require.Equal(t, "bootstrap", k.EndorsedByChange)
	keys, err := r.PublishedKeys()
	require.NoError(t, err)
	require.Len(t, keys, 1, "only the node key is published: the pseudonym row is no key")

	other, _ := newRegistryNodeKey(t)
	require.ErrorIs(t, h.apply(boot("n2", other), "").Err, ErrFailedPrecondition, "later keys need the admin quorum")

	legacyCluster := newHarness(t)
	_, legacy := newRegistryNodeKey(t)
	legacyCluster.must(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: "k1", PrivateSeed: legacy.Seed()}})
	require.ErrorIs(t, legacyCluster.apply(boot("n1", pub), "").Err, ErrFailedPrecondition)
}

func requireFieldErr(t *testing.T, err error, field string) {
	t.Helper()
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, field, e.Field)
}
