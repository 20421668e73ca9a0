package state

import (
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Signature purposes (domain separation), as attestation.Purpose values.
const (
	PurposeRegistration  = "registration"
	PurposePassport      = "passport-submission"
	PurposeAgreement     = "agreement"
	PurposeTermination   = "agreement-termination"
	PurposeAuthorization = "authorization"
	PurposeAdminChange   = "admin-change"
)

// Verifier checks signatures and passports. The state machine re-verifies
// what a command carries with it, at the command's stamped time, so a
// replica never accepts a forged registration, passport or agreement
// signature whoever proposed it. attestation.Verifier implements it.
type Verifier interface {
	// VerifySignature checks an ed25519 signature by pub over msg for a purpose.
	VerifySignature(pub []byte, purpose string, msg, sig []byte) error
	// VerifyPassport checks a passport token for the organisation (id and
	// raw public key) at time now, against the issuers and revoked serials
	// given, and returns what it attests.
	VerifyPassport(token, orgID string, orgKey []byte, issuer func(id string) (*trustfedv1.Issuer, bool), revoked func(serial string) bool, now time.Time) (*trustfedv1.Passport, error)
	// Fingerprint names a raw ed25519 public key; ok is false if it is not one.
	Fingerprint(pub []byte) (fp string, ok bool)
}
