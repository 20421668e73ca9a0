package attestation

import (
	"crypto/ed25519"
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestSignVerifyPurposes(t *testing.T) {
	purposes := []Purpose{PurposeRegistration, PurposePassport, PurposeAgreement, PurposeTermination}
	key := testPassportKey(9)
	pub := pubOf(key)
	msg := []byte("canonical bytes of a request")
	for _, signed := range purposes {
		sig := Sign(key, signed, msg)
		require.Len(t, sig, ed25519.SignatureSize)
		for _, checked := range purposes {
			err := Verify(pub, checked, msg, sig)
			if checked == signed {
				require.NoError(t, err, "%s", signed)
			} else {
				require.ErrorIs(t, err, ErrSignature, "%s signature verified as %s", signed, checked)
			}
		}
		// Never a plain ed25519 signature of msg.
		require.False(t, ed25519.Verify(pub, msg, sig))
	}
}

func TestVerifyRefuses(t *testing.T) {
	key := testPassportKey(9)
	pub := pubOf(key)
	msg := []byte("msg")
	sig := Sign(key, PurposeAgreement, msg)
	flipped := append([]byte(nil), sig...)
	flipped[0] ^= 1
	tests := []struct {
		name string
		pub  ed25519.PublicKey
		p    Purpose
		msg  []byte
		sig  []byte
	}{
		{"other message", pub, PurposeAgreement, []byte("msh"), sig},
		{"other key", pubOf(testPassportKey(8)), PurposeAgreement, msg, sig},
		{"flipped bit", pub, PurposeAgreement, msg, flipped},
		{"short signature", pub, PurposeAgreement, msg, sig[:63]},
		{"long signature", pub, PurposeAgreement, msg, append(append([]byte(nil), sig...), 0)},
		{"no signature", pub, PurposeAgreement, msg, nil},
		{"short key", pub[:31], PurposeAgreement, msg, sig},
		{"nil key", nil, PurposeAgreement, msg, sig},
		{"empty purpose", pub, "", msg, sig},
		{"purpose with separator", pub, "agreement/v1\x00", msg, sig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, Verify(tt.pub, tt.p, tt.msg, tt.sig), ErrSignature)
		})
	}
}

func TestSignPrefixIsUnambiguous(t *testing.T) {
	require.Equal(t, []byte("trustfed/agreement/v1\x00body"), signedMessage(PurposeAgreement, []byte("body")))
	require.Panics(t, func() { Sign(testPassportKey(9), "a/v1\x00b", nil) })
	require.Panics(t, func() { Sign(testPassportKey(9), "Agreement", nil) })
	require.Panics(t, func() { Sign(testPassportKey(9)[:32], PurposeAgreement, nil) })
}

// BenchmarkSignDecision is the signing cost added to every decision.
func BenchmarkSignDecision(b *testing.B) {
	_, key, _ := ed25519.GenerateKey(nil)
	st := &trustfedv1.DecisionStatement{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "task_send",
		Decision: trustfedv1.Decision_DECISION_ALLOW, EffectiveLevel: 2, FromLevel: 4, ToLevel: 2, RequiredLevel: 2,
		AgreementId: "agr-0000000000000001", Index: 12345, KeyId: "SHA256:abc"}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := SignDecision(key, st); err != nil {
			b.Fatal(err)
		}
	}
}
