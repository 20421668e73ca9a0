package gateway_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client/gateway"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
)

// FuzzOpenEnvelope: whatever arrives (before anything is authenticated),
// OpenEnvelope never panics, refuses with a *RefusedError, and accepts
// only a body signed by the key of a member certificate of the CA.
func FuzzOpenEnvelope(f *testing.F) {
	now := time.Unix(1796601600, 0)
	ca, err := attestation.NewCA("federation", now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x01}, ed25519.SeedSize))
	certPEM, _, _, err := ca.IssueMember("bank-a", "gw-1", key.Public().(ed25519.PublicKey), now, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	leaf, err := attestation.ParseCertificatePEM(certPEM)
	if err != nil {
		f.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	body := vectorBody()
	body.SenderCertificate = leaf.Raw
	env, err := gateway.Seal(key, body)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(env.Body, env.Signature)
	f.Add([]byte{}, []byte{})
	f.Add(env.Body[:20], env.Signature[:10])
	f.Fuzz(func(t *testing.T, b, sig []byte) {
		o, err := gateway.OpenEnvelope(&gatewayv1.Envelope{Body: b, Signature: sig}, roots, now)
		if err != nil {
			var r *gateway.RefusedError
			if !errors.As(err, &r) || r.Code == "" {
				t.Fatalf("not a coded refusal: %v", err)
			}
			return
		}
		if !ed25519.Verify(key.Public().(ed25519.PublicKey), append([]byte("trustfed/gateway-envelope/v1\x00"), b...), sig) || o.Body.SenderNodeId != "gw-1" {
			t.Fatalf("accepted an envelope the node did not sign")
		}
	})
}
