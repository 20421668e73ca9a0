package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// UpdateOrganization renames an organisation. Level and status changes are
// admin changes (ProposeAdminChange).
func (s *Server) UpdateOrganization(ctx context.Context, req *trustfedv1.UpdateOrganizationRequest) (*trustfedv1.UpdateOrganizationResponse, error) {
	cmd := &commandv1.UpdateOrganization{
		OrganizationId: req.GetOrganizationId(),
		Name:           req.GetName(),
	}
	if err := state.ValidateOrganizationUpdate(cmd); err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, cmd, rid); err != nil {
		return nil, err
	}
	got, err := s.appliedOrganization(cmd.OrganizationId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.UpdateOrganizationResponse{Organization: got}, nil
}

// appliedOrganization reads an organisation on the leader right after a
// command about it was applied here.
func (s *Server) appliedOrganization(id string) (*trustfedv1.Organization, error) {
	return applied(s.store, "organization", id, (*state.Reader).Organization)
}

// applied reads what a command just applied on this node (the leader)
// wrote; its absence is a bug, not a client error.
func applied[T any](store *state.Store, what, id string, get func(*state.Reader, string) (T, bool)) (T, error) {
	v, ok := get(store.Read(), id)
	if !ok {
		return v, fmt.Errorf("%s %q missing right after it was applied", what, id)
	}
	return v, nil
}

func agreementID(requestID string) string {
	sum := sha256.Sum256([]byte("agreement\x00" + requestID))
	return "agr-" + hex.EncodeToString(sum[:8])
}

// GetAgreement returns one agreement.
func (s *Server) GetAgreement(ctx context.Context, req *trustfedv1.GetAgreementRequest) (*trustfedv1.GetAgreementResponse, error) {
	if err := state.ValidateAgreementID("agreement_id", req.GetAgreementId()); err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	ag, ok := r.Agreement(req.AgreementId)
	if !ok {
		return nil, state.NotFound("agreement_id", "agreement %q does not exist", req.AgreementId)
	}
	if err := scopeCheck(ctx, "agreement_id", ag.OrganizationAId, ag.OrganizationBId); err != nil {
		return nil, err
	}
	return &trustfedv1.GetAgreementResponse{Agreement: ag, Meta: meta}, nil
}

// ListAgreements lists agreements in id order, optionally those of one organisation.
func (s *Server) ListAgreements(ctx context.Context, req *trustfedv1.ListAgreementsRequest) (*trustfedv1.ListAgreementsResponse, error) {
	after, err := pageStart(req.GetOrganizationId(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	ags, next := r.Agreements(req.GetOrganizationId(), after, pageSize(req.GetPageSize()))
	return &trustfedv1.ListAgreementsResponse{Agreements: ags, NextPageToken: encodePageToken(next), Meta: meta}, nil
}
