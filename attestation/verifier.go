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

// OpenCheckpoint implements state.Verifier: it verifies a checkpoint signed
// by the registry key pub under the name of the origin it states.
func (Verifier) OpenCheckpoint(signed []byte, pub ed25519.PublicKey) (origin string, size uint64, root []byte, err error) {
	c, err := parseSignedCheckpoint(signed)
	if err != nil {
		return "", 0, nil, err
	}
	vkey, err := CheckpointVerifierKey(c.Origin, pub)
	if err != nil {
		return "", 0, nil, err
	}
	if _, err := OpenCheckpoint(signed, c.Origin, vkey); err != nil {
		return "", 0, nil, err
	}
	return c.Origin, c.Size, c.Root, nil
}

// ParseCheckpoint implements state.Verifier.
func (Verifier) ParseCheckpoint(signed []byte) (origin string, size uint64, root []byte, err error) {
	c, err := parseSignedCheckpoint(signed)
	return c.Origin, c.Size, c.Root, err
}

// VerifyCosignature implements state.Verifier.
func (Verifier) VerifyCosignature(signed []byte, line, name string, pub ed25519.PublicKey) (time.Time, error) {
	return VerifyCosignature(signed, line, name, pub)
}

// parseSignedCheckpoint reads the checkpoint in a signed note, unverified.
func parseSignedCheckpoint(signed []byte) (Checkpoint, error) {
	text, _, err := SplitNote(signed)
	if err != nil {
		return Checkpoint{}, err
	}
	return ParseCheckpoint([]byte(text))
}
