package testutil

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Admin is a federation admin of a test: an id and an approval key derived
// from the id, so the same admin has the same key in every process.
type Admin struct {
	ID  string
	Key ed25519.PrivateKey
}

// NewAdmin returns the test admin named id.
func NewAdmin(id string) Admin {
	seed := sha256.Sum256([]byte("trustfed test admin " + id))
	return Admin{ID: id, Key: ed25519.NewKeyFromSeed(seed[:])}
}

// Public is the admin's raw public key.
func (a Admin) Public() []byte { return a.Key.Public().(ed25519.PublicKey) }

// Approve signs a change's bytes.
func (a Admin) Approve(change []byte) *trustfedv1.AdminSignature {
	return client.ApproveAdminChange(a.Key, change)
}

// Enrol is the change that enrols the admin.
func (a Admin) Enrol() *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_AddAdmin{AddAdmin: &trustfedv1.AddAdminChange{AdminId: a.ID, Name: "Admin " + a.ID, PublicKey: a.Public()}}}
}

// ChangeBytes serializes a change proposed at now, with a reason if it has
// none and an expire_time one hour later if it has none.
func ChangeBytes(t testing.TB, c *trustfedv1.AdminChange, now time.Time) []byte {
	t.Helper()
	if c.Reason == "" {
		c.Reason = "test change"
	}
	b, err := client.EncodeAdminChange(c, now, time.Hour)
	if err != nil {
		t.Fatalf("encode admin change: %v", err)
	}
	return b
}

// Admin changes of tests, one constructor per kind.

// SetLevel sets an organisation's declared level.
func SetLevel(org string, level uint32) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_SetDeclaredLevel{SetDeclaredLevel: &trustfedv1.SetDeclaredLevelChange{OrganizationId: org, Level: level}}}
}

// SetStatus suspends, reactivates or revokes an organisation.
func SetStatus(org string, s trustfedv1.OrganizationStatus) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_SetOrganizationStatus{SetOrganizationStatus: &trustfedv1.SetOrganizationStatusChange{OrganizationId: org, Status: s}}}
}

// OverrideOnboarding lifts an organisation's onboarding cap.
func OverrideOnboarding(org, reason string) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_OverrideOnboarding{OverrideOnboarding: &trustfedv1.OverrideOnboardingChange{OrganizationId: org}}}
}

// Accredit accredits an issuer.
func Accredit(is *trustfedv1.Issuer) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_AccreditIssuer{AccreditIssuer: &trustfedv1.AccreditIssuerChange{
		IssuerId: is.Id, Name: is.Name, PublicKey: is.PublicKey, MaxLevel: is.MaxLevel}}}
}

// Withdraw withdraws an issuer's accreditation.
func Withdraw(issuerID, reason string) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_WithdrawIssuer{WithdrawIssuer: &trustfedv1.WithdrawIssuerChange{IssuerId: issuerID}}}
}

// RevokePassport revokes a passport serial.
func RevokePassport(serial, reason string) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Reason: reason, Change: &trustfedv1.AdminChange_RevokePassport{RevokePassport: &trustfedv1.RevokePassportChange{Serial: serial}}}
}

// Policy changes the federation policy.
func Policy(p *trustfedv1.FederationPolicyChange) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_UpdateFederationPolicy{UpdateFederationPolicy: p}}
}

// RemoveAdmin removes an admin.
func RemoveAdmin(id string) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_RemoveAdmin{RemoveAdmin: &trustfedv1.RemoveAdminChange{AdminId: id}}}
}

// EndorseNodeKey endorses registry node nodeID's public key pub for
// [from, until).
func EndorseNodeKey(nodeID string, pub []byte, from, until time.Time) *trustfedv1.AdminChange {
	return client.EndorseNodeKey(nodeID, pub, from, until)
}

// RevokeNodeKey revokes node nodeID's key keyID for signatures at or after since.
func RevokeNodeKey(nodeID, keyID string, since time.Time) *trustfedv1.AdminChange {
	return client.RevokeNodeKey(nodeID, keyID, since)
}
