package testutil

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// Federation makes the signed material of a test federation: an issuer,
// organisation keys, passports, registrations, agreement signatures.
type Federation struct {
	t         testing.TB
	IssuerID  string
	IssuerKey ed25519.PrivateKey
	keys      map[string]ed25519.PrivateKey
	serial    int
}

// NewFederation returns a federation with one issuer "acme-assessor".
func NewFederation(t testing.TB) *Federation {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("issuer key: %v", err)
	}
	return &Federation{t: t, IssuerID: "acme-assessor", IssuerKey: key, keys: map[string]ed25519.PrivateKey{}}
}

// Issuer is the issuer to accredit, with max level 4.
func (f *Federation) Issuer() *trustfedv1.Issuer {
	return &trustfedv1.Issuer{Id: f.IssuerID, Name: "Acme Assessor", PublicKey: f.IssuerKey.Public().(ed25519.PublicKey), MaxLevel: 4}
}

// IssuerPEM is the issuer's public key as PKIX PEM.
func (f *Federation) IssuerPEM() string {
	b, err := attestation.MarshalPublicKeyPEM(f.IssuerKey.Public().(ed25519.PublicKey))
	if err != nil {
		f.t.Fatalf("issuer pem: %v", err)
	}
	return string(b)
}

// Key returns the organisation's key, creating it on first use.
func (f *Federation) Key(org string) ed25519.PrivateKey {
	if k, ok := f.keys[org]; ok {
		return k
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.t.Fatalf("org key: %v", err)
	}
	f.keys[org] = k
	return k
}

// PublicKey returns the organisation's raw public key.
func (f *Federation) PublicKey(org string) []byte { return f.Key(org).Public().(ed25519.PublicKey) }

// SetKey makes org use key (e.g. to reuse another organisation's key).
func (f *Federation) SetKey(org string, key ed25519.PrivateKey) { f.keys[org] = key }

// Passport issues a passport for org at level, valid from nbf to exp.
func (f *Federation) Passport(org string, level uint32, nbf, exp time.Time) string {
	return f.PassportForKey(org, f.PublicKey(org), level, nbf, exp)
}

// PassportForKey issues a passport naming org with the public key pub.
func (f *Federation) PassportForKey(org string, pub ed25519.PublicKey, level uint32, nbf, exp time.Time) string {
	f.serial++
	tok, err := attestation.IssuePassport(attestation.PassportClaims{
		Serial: fmt.Sprintf("pp-%s-%d", org, f.serial), IssuerID: f.IssuerID, OrganizationID: org,
		OrganizationKey: pub, Level: level, Jurisdiction: "EU",
		IssuedAt: nbf, NotBefore: nbf, ExpiresAt: exp,
	}, f.IssuerKey)
	if err != nil {
		f.t.Fatalf("issue passport: %v", err)
	}
	return tok
}

// Registration returns a signed registration of org (declared level, and a
// passport at attested level valid for a year from now), after applying
// mutate to the registration.
func (f *Federation) Registration(org string, declared, attested uint32, now time.Time, mutate ...func(*trustfedv1.Registration)) (reg, sig []byte) {
	r := &trustfedv1.Registration{
		OrganizationId: org, Name: "Org " + org, Jurisdiction: "EU", DeclaredLevel: declared,
		PublicKey:             f.PublicKey(org),
		ControlProfile:        &trustfedv1.ControlProfile{Logging: &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY}},
		NotificationEndpoints: []string{"https://" + org + ".example/trustfed"},
		Passport:              f.Passport(org, attested, now.Add(-time.Hour), now.Add(365*24*time.Hour)),
		Nonce:                 fmt.Sprintf("nonce-%s-%d", org, now.UnixNano()),
	}
	for _, m := range mutate {
		m(r)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		f.t.Fatalf("marshal registration: %v", err)
	}
	return b, attestation.Sign(f.Key(org), attestation.PurposeRegistration, b)
}

// SignTerms is org's signature over an agreement's terms.
func (f *Federation) SignTerms(org string, terms []byte) []byte {
	return attestation.Sign(f.Key(org), attestation.PurposeAgreement, terms)
}

// SignPassport is org's signature over a passport it submits.
func (f *Federation) SignPassport(org, token string) []byte {
	return attestation.Sign(f.Key(org), attestation.PurposePassport, []byte(token))
}

// Termination is org's signed termination of an agreement.
func (f *Federation) Termination(org, agreementID, reason string) (b, sig []byte) {
	b, err := proto.Marshal(&trustfedv1.AgreementTermination{AgreementId: agreementID, OrganizationId: org, Reason: reason})
	if err != nil {
		f.t.Fatalf("marshal termination: %v", err)
	}
	return b, attestation.Sign(f.Key(org), attestation.PurposeTermination, b)
}

// SignAuthorization is org's approval of a dual-authorisation statement.
func (f *Federation) SignAuthorization(org string, statement []byte) []byte {
	return attestation.Sign(f.Key(org), attestation.PurposeAuthorization, statement)
}
