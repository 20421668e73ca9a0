package state

import (
	"crypto/ed25519"
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
	// OpenCheckpoint verifies an audit checkpoint (a C2SP tlog-checkpoint
	// signed note) signed by the registry key pub under its origin's name.
	OpenCheckpoint(note []byte, pub ed25519.PublicKey) (origin string, size uint64, root []byte, err error)
	// ParseCheckpoint reads a signed checkpoint without verifying it.
	ParseCheckpoint(note []byte) (origin string, size uint64, root []byte, err error)
	// VerifyCosignature checks a witness's C2SP tlog-cosignature line
	// (witness name, key pub) over the checkpoint note and returns its time.
	VerifyCosignature(note []byte, line, name string, pub ed25519.PublicKey) (time.Time, error)
}
