package registry

import (
	"context"

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

// GetFederationPolicy returns the federation policy.
func (s *Server) GetFederationPolicy(ctx context.Context, req *trustfedv1.GetFederationPolicyRequest) (*trustfedv1.GetFederationPolicyResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetFederationPolicyResponse{Policy: r.FederationPolicy(), Meta: meta}, nil
}
