package attestation

import (
	"crypto/ed25519"
	"errors"
	"fmt"
)

// Purpose separates the domains of trustfed's ed25519 signatures, so that a
// signature made for one purpose never verifies for another.
type Purpose string

// Purposes of signatures.
const (
	// PurposeRegistration signs an organisation's registration request.
	PurposeRegistration Purpose = "registration"
	// PurposePassport signs the submission of a passport by an organisation.
	PurposePassport Purpose = "passport-submission"
	// PurposeAgreement signs a bilateral agreement.
	PurposeAgreement Purpose = "agreement"
	// PurposeTermination signs the termination of a bilateral agreement.
	PurposeTermination Purpose = "agreement-termination"
	// PurposeDecision signs a registry decision (DecisionStatement).
	PurposeDecision Purpose = "decision"
	// PurposeAuthorization signs an organisation's approval of a
	// dual-authorisation request (AuthorizationStatement).
	PurposeAuthorization Purpose = "authorization"
	// PurposeAdminChange signs a federation admin's approval of a sensitive
	// admin change (the serialized trustfed.v1.AdminChange).
	PurposeAdminChange Purpose = "admin-change"
	// PurposeWebhook signs a notification the registry delivers to a
	// member's webhook endpoint.
	PurposeWebhook Purpose = "webhook"
	// PurposeMemberNode signs an organisation's enrolment of a member node
	// (the serialized trustfed.v1.MemberNodeEnrolment).
	PurposeMemberNode Purpose = "member-node"
	// PurposeMemberChallenge signs a member challenge (the serialized
	// trustfed.v1.MemberChallenge): first the registry, then the member node
	// to prove it holds its enrolled key.
	PurposeMemberChallenge Purpose = "member-challenge"
	// PurposeWebhookSettings signs an organisation's webhook settings (the
	// serialized trustfed.v1.WebhookSettings: endpoints and CA certificates).
	PurposeWebhookSettings Purpose = "org-webhook"
	// PurposeCheckpoint signs a registry node's certification of an audit
	// checkpoint (its note text: tree head and trust-state commitment).
	PurposeCheckpoint Purpose = "checkpoint"
	// PurposeDecisionBatch signs the head of an audit batch of decisions
	// (the serialized trustfed.v1.DecisionBatchHead): each registry node
	// that re-derived every decision of the batch from its own state.
	PurposeDecisionBatch Purpose = "decision-batch"
	// PurposeSnapshot signs a backup snapshot (the serialized
	// trustfed.v1.SnapshotStatement: where it was taken and its SHA-256).
	PurposeSnapshot Purpose = "snapshot"
)

// ErrSignature is returned by Verify when a signature does not verify.
var ErrSignature = errors.New("signature does not verify")

// valid reports whether p is lowercase letters, digits and inner hyphens.
// It then holds neither '/' nor NUL, so the signed prefix is unambiguous.
func (p Purpose) valid() bool {
	if p == "" || len(p) > 64 || p[0] == '-' || p[len(p)-1] == '-' {
		return false
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// signedMessage is what is signed: "trustfed/" + p + "/v1\x00" + msg.
func signedMessage(p Purpose, msg []byte) []byte {
	const prefix, suffix = "trustfed/", "/v1\x00"
	out := make([]byte, 0, len(prefix)+len(p)+len(suffix)+len(msg))
	out = append(out, prefix...)
	out = append(out, p...)
	out = append(out, suffix...)
	return append(out, msg...)
}

// Sign signs msg for purpose p: ed25519 over "trustfed/" + p + "/v1\x00" +
// msg. Like ed25519.Sign it panics on a key of the wrong size, and it panics
// on an invalid purpose (both are programming errors: use the constants).
func Sign(key ed25519.PrivateKey, p Purpose, msg []byte) []byte {
	if !p.valid() {
		panic(fmt.Sprintf("attestation: invalid signature purpose %q", string(p)))
	}
	if len(key) != ed25519.PrivateKeySize {
		panic(fmt.Sprintf("attestation: ed25519 private key of %d bytes", len(key)))
	}
	return ed25519.Sign(key, signedMessage(p, msg))
}

// Verify checks that sig is pub's signature of msg for purpose p. It returns
// an error wrapping ErrSignature when it is not, including for a key or
// signature of the wrong size or an invalid purpose.
func Verify(pub ed25519.PublicKey, p Purpose, msg, sig []byte) error {
	switch {
	case !p.valid():
		return fmt.Errorf("%w: invalid purpose %q", ErrSignature, string(p))
	case len(pub) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: public key of %d bytes", ErrSignature, len(pub))
	case len(sig) != ed25519.SignatureSize:
		return fmt.Errorf("%w: signature of %d bytes", ErrSignature, len(sig))
	case !ed25519.Verify(pub, signedMessage(p, msg), sig):
		return fmt.Errorf("%w: %s signature by %s", ErrSignature, p, Fingerprint(pub))
	}
	return nil
}
