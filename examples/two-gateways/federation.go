package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// federation is what the demo's federation authority and organisations
// do at the registry before any gateway runs: accredit a passport issuer,
// register and approve two organisations, sign an agreement, enrol one
// member node per organisation. Everything goes through the public API
// with the dev server's admin token and admin key.
type federation struct {
	admin     *client.Client
	adminKey  ed25519.PrivateKey
	issuerKey ed25519.PrivateKey
	orgKeys   map[string]ed25519.PrivateKey
}

func newFederation(admin *client.Client, adminKey ed25519.PrivateKey) (*federation, error) {
	_, issuer, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return &federation{admin: admin, adminKey: adminKey, issuerKey: issuer, orgKeys: map[string]ed25519.PrivateKey{}}, nil
}

// change applies an admin change (the dev federation needs one approval).
func (f *federation) change(ctx context.Context, c *trustfedv1.AdminChange, reason string) error {
	c.Reason = reason
	rec, err := f.admin.ProposeAdminChange(ctx, f.adminKey, c, time.Hour)
	if err != nil {
		return fmt.Errorf("%s: %w", reason, err)
	}
	if rec.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
		return fmt.Errorf("%s: change %s is %v", reason, rec.Id, rec.Status)
	}
	return nil
}

func (f *federation) accredit(ctx context.Context) error {
	accredit := &trustfedv1.AccreditIssuerChange{IssuerId: "demo-assessor", Name: "Demo Assessor", PublicKey: f.issuerKey.Public().(ed25519.PublicKey), MaxLevel: 4}
	if err := f.change(ctx, &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_AccreditIssuer{AccreditIssuer: accredit}}, "accredit the demo assessor"); err != nil {
		return err
	}
	policy := &trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(4)}
	return f.change(ctx, &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_UpdateFederationPolicy{UpdateFederationPolicy: policy}}, "no onboarding cap in the demo")
}

// register registers org at level (declared and attested) and approves it.
func (f *federation) register(ctx context.Context, org string, level uint32) error {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	f.orgKeys[org] = key
	now := time.Now().UTC().Truncate(time.Second)
	passport, err := attestation.IssuePassport(attestation.PassportClaims{
		Serial: "pp-" + org, IssuerID: "demo-assessor", OrganizationID: org, OrganizationKey: key.Public().(ed25519.PublicKey),
		Level: level, Jurisdiction: "EU", IssuedAt: now.Add(-time.Hour), NotBefore: now.Add(-time.Hour), ExpiresAt: now.Add(365 * 24 * time.Hour),
	}, f.issuerKey)
	if err != nil {
		return err
	}
	reg := &trustfedv1.Registration{
		OrganizationId: org, Name: org, Jurisdiction: "EU", DeclaredLevel: level, PublicKey: key.Public().(ed25519.PublicKey),
		ControlProfile:        &trustfedv1.ControlProfile{Logging: &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY}},
		NotificationEndpoints: []string{"https://" + org + ".example/trustfed"}, Passport: passport, Nonce: fmt.Sprintf("demo-%s-%d", org, now.UnixNano()),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(reg)
	if err != nil {
		return err
	}
	if _, err := f.admin.Membership().RegisterOrganization(ctx, &trustfedv1.RegisterOrganizationRequest{Registration: b, Signature: attestation.Sign(key, attestation.PurposeRegistration, b)}); err != nil {
		return fmt.Errorf("register %s: %w", org, err)
	}
	if _, err := f.admin.Admin().ApproveOrganization(ctx, &trustfedv1.ApproveOrganizationRequest{OrganizationId: org}); err != nil {
		return fmt.Errorf("approve %s: %w", org, err)
	}
	return nil
}

// agree has a and b sign an agreement covering actions for a day.
func (f *federation) agree(ctx context.Context, a, b string, actions ...string) error {
	now := time.Now().UTC().Truncate(time.Second)
	p, err := f.admin.Membership().ProposeAgreement(ctx, &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: a, OrganizationBId: b, Scope: &trustfedv1.AgreementScope{AllowedActions: actions},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
	})
	if err != nil {
		return fmt.Errorf("propose agreement: %w", err)
	}
	for _, org := range []string{a, b} {
		sig := attestation.Sign(f.orgKeys[org], attestation.PurposeAgreement, p.Agreement.Terms)
		if _, err := f.admin.Membership().SignAgreement(ctx, &trustfedv1.SignAgreementRequest{AgreementId: p.Agreement.Id, OrganizationId: org, Signature: sig}); err != nil {
			return fmt.Errorf("%s signs the agreement: %w", org, err)
		}
	}
	return nil
}

// enrol enrols a member node of org with a fresh key and returns the key.
func (f *federation) enrol(ctx context.Context, org, node string) (ed25519.PrivateKey, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	req, err := client.NewMemberEnrolment(f.orgKeys[org], org, node, pub, time.Now())
	if err != nil {
		return nil, err
	}
	if _, err := f.admin.Access().EnrolMemberNode(ctx, req); err != nil {
		return nil, fmt.Errorf("enrol %s/%s: %w", org, node, err)
	}
	return key, nil
}

// revoke revokes org (its partners are told through their event streams).
func (f *federation) revoke(ctx context.Context, org string) error {
	return f.change(ctx, &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_SetOrganizationStatus{SetOrganizationStatus: &trustfedv1.SetOrganizationStatusChange{
		OrganizationId: org, Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED}}}, "revoke "+org)
}
