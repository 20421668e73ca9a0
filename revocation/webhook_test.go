package revocation

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// testKey is a deterministic registry key for tests.
func testKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func TestWebhookRoundTrip(t *testing.T) {
	pub, priv := testKey(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	body := []byte(`{"organizationId":"org-revoked"}`)
	h, err := SignWebhook(priv, "registry-1", "evt-42", now, body)
	require.NoError(t, err)
	require.Equal(t, "evt-42", h.Get(HeaderEventID))
	require.Equal(t, "2026-11-23T11:00:00.123456789Z", h.Get(HeaderTimestamp))
	require.Equal(t, "registry-1", h.Get(HeaderKeyID))
	sig, err := base64.StdEncoding.DecodeString(h.Get(HeaderSignature))
	require.NoError(t, err)
	require.NoError(t, attestation.Verify(pub, attestation.PurposeWebhook,
		[]byte("evt-42\n2026-11-23T11:00:00.123456789Z\n"+string(body)), sig))

	id, err := VerifyWebhook(pub, h, body, now.Add(time.Minute), time.Minute)
	require.NoError(t, err)
	require.Equal(t, "evt-42", id)
}

func TestSignWebhookRefuses(t *testing.T) {
	_, priv := testKey(t)
	now := time.Now()
	for name, tc := range map[string]struct {
		key            ed25519.PrivateKey
		keyID, eventID string
	}{
		"empty event id":     {priv, "k", ""},
		"newline in id":      {priv, "k", "a\nb"},
		"space in id":        {priv, "k", "a b"},
		"empty key id":       {priv, "", "e"},
		"short private key":  {priv[:10], "k", "e"},
		"event id too long":  {priv, "k", string(make([]byte, 257))},
		"non-ascii event id": {priv, "k", "évt"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := SignWebhook(tc.key, tc.keyID, tc.eventID, now, nil)
			require.Error(t, err)
		})
	}
}

func TestVerifyWebhookRefuses(t *testing.T) {
	pub, priv := testKey(t)
	otherPub, _, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	body := []byte("revoked")
	signed := func() http.Header {
		h, err := SignWebhook(priv, "k1", "evt-1", now, body)
		require.NoError(t, err)
		return h
	}
	for name, tc := range map[string]struct {
		edit    func(h http.Header) []byte // returns the body to verify
		pub     ed25519.PublicKey
		now     time.Time
		wantErr error
		naming  string
	}{
		"missing event id":  {edit: func(h http.Header) []byte { h.Del(HeaderEventID); return body }, wantErr: ErrWebhookHeader, naming: HeaderEventID},
		"missing timestamp": {edit: func(h http.Header) []byte { h.Del(HeaderTimestamp); return body }, wantErr: ErrWebhookHeader, naming: HeaderTimestamp},
		"missing signature": {edit: func(h http.Header) []byte { h.Del(HeaderSignature); return body }, wantErr: ErrWebhookHeader, naming: HeaderSignature},
		"repeated event id": {edit: func(h http.Header) []byte { h.Add(HeaderEventID, "evt-2"); return body }, wantErr: ErrWebhookHeader, naming: HeaderEventID},
		"bad timestamp":     {edit: func(h http.Header) []byte { h.Set(HeaderTimestamp, "yesterday"); return body }, wantErr: ErrWebhookHeader, naming: HeaderTimestamp},
		"bad base64":        {edit: func(h http.Header) []byte { h.Set(HeaderSignature, "not*base64"); return body }, wantErr: ErrWebhookHeader, naming: HeaderSignature},
		"tampered body":     {edit: func(http.Header) []byte { return []byte("reinstated") }, wantErr: attestation.ErrSignature},
		"tampered event id": {edit: func(h http.Header) []byte { h.Set(HeaderEventID, "evt-2"); return body }, wantErr: attestation.ErrSignature},
		"tampered timestamp": {edit: func(h http.Header) []byte {
			h.Set(HeaderTimestamp, formatTimestamp(now.Add(time.Second)))
			return body
		}, wantErr: attestation.ErrSignature},
		"tampered signature": {edit: func(h http.Header) []byte {
			sig, _ := base64.StdEncoding.DecodeString(h.Get(HeaderSignature))
			sig[0] ^= 1
			h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
			return body
		}, wantErr: attestation.ErrSignature},
		"other key":          {edit: func(http.Header) []byte { return body }, pub: otherPub, wantErr: attestation.ErrSignature},
		"too old":            {edit: func(http.Header) []byte { return body }, now: now.Add(5*time.Minute + time.Nanosecond), wantErr: ErrWebhookSkew},
		"from the future":    {edit: func(http.Header) []byte { return body }, now: now.Add(-5*time.Minute - time.Nanosecond), wantErr: ErrWebhookSkew},
		"skew at the border": {edit: func(http.Header) []byte { return body }, now: now.Add(5 * time.Minute)},
	} {
		t.Run(name, func(t *testing.T) {
			h := signed()
			b := tc.edit(h)
			key, at := pub, now
			if tc.pub != nil {
				key = tc.pub
			}
			if !tc.now.IsZero() {
				at = tc.now
			}
			id, err := VerifyWebhook(key, h, b, at, 0) // 0: the default ±5 min
			if tc.wantErr == nil {
				require.NoError(t, err)
				require.Equal(t, "evt-1", id)
				return
			}
			require.ErrorIs(t, err, tc.wantErr)
			require.Empty(t, id)
			require.Contains(t, err.Error(), tc.naming)
		})
	}
}

func TestDeduper(t *testing.T) {
	d := NewDeduper(3)
	require.False(t, d.Seen("a"))
	require.True(t, d.Seen("a"))
	require.False(t, d.Seen("b"))
	require.False(t, d.Seen("c"))
	require.True(t, d.Seen("a"))
	require.False(t, d.Seen("d")) // evicts a, the oldest
	require.False(t, d.Seen("a")) // evicts b
	require.True(t, d.Seen("c"))
	require.True(t, d.Seen("d"))

	d.Forget("a")
	require.False(t, d.Seen("a")) // anew, in c's slot: evicts c
	require.False(t, d.Seen("e")) // evicts d
	require.False(t, d.Seen("f")) // overwrites a's stale slot: a stays
	require.True(t, d.Seen("a"))
	require.True(t, d.Seen("e"))
	require.True(t, d.Seen("f"))
	require.False(t, d.Seen("c"))
}

func TestDeduperConcurrent(t *testing.T) {
	d := NewDeduper(1000)
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				if !d.Seen(fmt.Sprintf("evt-%d", (i+g)%500)) {
					fresh.Add(1)
				}
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 500, fresh.Load()) // each id fresh exactly once
}

// TestWebhookSignedByNodeKeyVerifiesWithPublishedKeys: a notification
// signed by the sending node's endorsed key verifies against the key
// history of GET /v1/keys; after the key's revocation time, or by a key the
// registry does not publish, it does not.
func TestWebhookSignedByNodeKeyVerifiesWithPublishedKeys(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	signer, err := attestation.NewFileSigner(priv)
	require.NoError(t, err)
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	id := attestation.Fingerprint(pub)
	keys := map[string]*trustfedv1.RegistryKey{id: {KeyId: id, NodeId: "n2", PublicKey: pub,
		ValidFrom: timestamppb.New(now.Add(-time.Hour)), ValidUntil: timestamppb.New(now.Add(time.Hour))}}
	body := []byte(`{"kind":"REVOKED"}`)
	h, err := SignWebhookWith(context.Background(), signer, id, "cascade-1", now, body)
	require.NoError(t, err)
	got, err := VerifyWebhookWithKeys(keys, h, body, now, time.Minute)
	require.NoError(t, err)
	require.Equal(t, "cascade-1", got)

	keys[id].RevokeTime = timestamppb.New(now.Add(-time.Second))
	_, err = VerifyWebhookWithKeys(keys, h, body, now, time.Minute)
	require.ErrorIs(t, err, attestation.ErrNodeKey, "signed after the key's revocation time")

	_, err = VerifyWebhookWithKeys(map[string]*trustfedv1.RegistryKey{}, h, body, now, time.Minute)
	require.ErrorIs(t, err, attestation.ErrNodeKey, "a key the registry does not publish")
}
