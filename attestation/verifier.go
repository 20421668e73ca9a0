package attestation

import (
	"crypto/ed25519"
	"fmt"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Verifier gives the registry's state machine (registry/state.Verifier)
// this package's signature and passport checks. It is stateless and pure:
// the time and the issuers come in as arguments.
type Verifier struct{}

// VerifySignature checks an ed25519 signature by the raw public key pub.
func (Verifier) VerifySignature(pub []byte, purpose string, msg, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes, want %d", ErrSignature, len(pub), ed25519.PublicKeySize)
	}
	return Verify(ed25519.PublicKey(pub), Purpose(purpose), msg, sig)
}

// VerifyPassport verifies a passport token for an organisation at now and
// returns what it attests, as the registry stores it.
func (Verifier) VerifyPassport(token, orgID string, orgKey []byte, issuer func(id string) (*trustfedv1.Issuer, bool), revoked func(serial string) bool, now time.Time) (*trustfedv1.Passport, error) {
	c, err := VerifyPassport(VerifyPassportInput{
		Token: token,
		Issuer: func(id string) (PassportIssuer, bool) {
			is, ok := issuer(id)
			if !ok || len(is.PublicKey) != ed25519.PublicKeySize {
				return PassportIssuer{}, false
			}
			return PassportIssuer{
				ID:        is.Id,
				PublicKey: ed25519.PublicKey(is.PublicKey),
				MaxLevel:  is.MaxLevel,
				Withdrawn: is.Status != trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED,
			}, true
		},
		OrganizationID:  orgID,
		OrganizationKey: ed25519.PublicKey(orgKey),
		Now:             now,
		SerialRevoked:   revoked,
	})
	if err != nil {
		return nil, err
	}
	return &trustfedv1.Passport{
		Serial:               c.Serial,
		IssuerId:             c.IssuerID,
		Level:                c.Level,
		Jurisdiction:         c.Jurisdiction,
		ControlProfileDigest: c.ControlProfileDigest,
		IssueTime:            timestamppb.New(c.IssuedAt),
		NotBefore:            timestamppb.New(c.NotBefore),
		ExpireTime:           timestamppb.New(c.ExpiresAt),
		Token:                token,
	}, nil
}

// Fingerprint names a raw ed25519 public key.
func (Verifier) Fingerprint(pub []byte) (string, bool) {
	if len(pub) != ed25519.PublicKeySize {
		return "", false
	}
	return Fingerprint(ed25519.PublicKey(pub)), true
}
