package registry

import (
	"context"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// ApproveOrganization admits a PENDING registration; onboarding starts now.
func (s *Server) ApproveOrganization(ctx context.Context, req *trustfedv1.ApproveOrganizationRequest) (*trustfedv1.ApproveOrganizationResponse, error) {
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.ApproveOrganization{OrganizationId: req.OrganizationId}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedOrganization(req.OrganizationId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ApproveOrganizationResponse{Organization: got}, nil
}

// OverrideOnboarding lifts an organisation's onboarding cap, recording why.
func (s *Server) OverrideOnboarding(ctx context.Context, req *trustfedv1.OverrideOnboardingRequest) (*trustfedv1.OverrideOnboardingResponse, error) {
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if err := state.ValidateReason("reason", req.GetReason()); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.OverrideOnboarding{OrganizationId: req.OrganizationId, Reason: req.Reason}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedOrganization(req.OrganizationId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.OverrideOnboardingResponse{Organization: got}, nil
}

// AccreditIssuer accredits a passport issuer up to a max level.
func (s *Server) AccreditIssuer(ctx context.Context, req *trustfedv1.AccreditIssuerRequest) (*trustfedv1.AccreditIssuerResponse, error) {
	pub, err := attestation.ParsePublicKeyPEM([]byte(req.GetPublicKeyPem()))
	if err != nil {
		return nil, state.Invalid("public_key_pem", "%v", err)
	}
	is := &trustfedv1.Issuer{Id: req.GetIssuerId(), Name: req.GetName(), PublicKey: pub, MaxLevel: req.GetMaxLevel()}
	if err := state.ValidateIssuer(s.cfg.Verifier, is); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.AccreditIssuer{Issuer: is}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, _ := s.store.Read().Issuer(is.Id)
	return &trustfedv1.AccreditIssuerResponse{Issuer: got}, nil
}

// WithdrawIssuer withdraws an issuer's accreditation: its passports stop
// counting at the next decision.
func (s *Server) WithdrawIssuer(ctx context.Context, req *trustfedv1.WithdrawIssuerRequest) (*trustfedv1.WithdrawIssuerResponse, error) {
	if err := state.ValidateOrganizationID("issuer_id", req.GetIssuerId()); err != nil {
		return nil, err
	}
	if err := state.ValidateReason("reason", req.GetReason()); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.WithdrawIssuer{IssuerId: req.IssuerId, Reason: req.Reason}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, _ := s.store.Read().Issuer(req.IssuerId)
	return &trustfedv1.WithdrawIssuerResponse{Issuer: got}, nil
}

// GetIssuer returns one issuer.
func (s *Server) GetIssuer(ctx context.Context, req *trustfedv1.GetIssuerRequest) (*trustfedv1.GetIssuerResponse, error) {
	if err := state.ValidateOrganizationID("issuer_id", req.GetIssuerId()); err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	is, ok := r.Issuer(req.IssuerId)
	if !ok {
		return nil, state.NotFound("issuer_id", "issuer %q does not exist", req.IssuerId)
	}
	return &trustfedv1.GetIssuerResponse{Issuer: is, Meta: meta}, nil
}

// ListIssuers lists every issuer.
func (s *Server) ListIssuers(ctx context.Context, req *trustfedv1.ListIssuersRequest) (*trustfedv1.ListIssuersResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ListIssuersResponse{Issuers: r.Issuers(), Meta: meta}, nil
}

// RevokePassport revokes a passport serial everywhere.
func (s *Server) RevokePassport(ctx context.Context, req *trustfedv1.RevokePassportRequest) (*trustfedv1.RevokePassportResponse, error) {
	if req.GetSerial() == "" || len(req.GetSerial()) > 128 {
		return nil, state.Invalid("serial", "must be 1..128 characters")
	}
	if err := state.ValidateReason("reason", req.GetReason()); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.RevokePassport{Serial: req.Serial, Reason: req.Reason}, req.GetRequestId()); err != nil {
		return nil, err
	}
	return &trustfedv1.RevokePassportResponse{}, nil
}

// GetFederationPolicy returns the federation policy.
func (s *Server) GetFederationPolicy(ctx context.Context, req *trustfedv1.GetFederationPolicyRequest) (*trustfedv1.GetFederationPolicyResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetFederationPolicyResponse{Policy: r.FederationPolicy(), Meta: meta}, nil
}

// UpdateFederationPolicy changes the onboarding cap level or period.
func (s *Server) UpdateFederationPolicy(ctx context.Context, req *trustfedv1.UpdateFederationPolicyRequest) (*trustfedv1.UpdateFederationPolicyResponse, error) {
	cmd := &commandv1.UpdateFederationPolicy{OnboardingCapLevel: req.OnboardingCapLevel, OnboardingPeriod: req.OnboardingPeriod, FreshnessWindow: req.FreshnessWindow}
	if err := state.ValidatePolicyUpdate(cmd); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	return &trustfedv1.UpdateFederationPolicyResponse{Policy: s.store.Read().FederationPolicy()}, nil
}
