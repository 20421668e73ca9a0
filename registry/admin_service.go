package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

// adminService implements trustfedv1.AdminService on the shared core.
type adminService struct {
	trustfedv1.UnsafeAdminServiceServer
	*Server
}

// UpdateOrganization renames an organisation. Level and status changes are
// admin changes (ProposeAdminChange).
func (s *adminService) UpdateOrganization(ctx context.Context, req *trustfedv1.UpdateOrganizationRequest) (*trustfedv1.UpdateOrganizationResponse, error) {
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
func (s *adminService) GetAgreement(ctx context.Context, req *trustfedv1.GetAgreementRequest) (*trustfedv1.GetAgreementResponse, error) {
	ag, _, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.Agreement]{
		field: "agreement_id", id: req.GetAgreementId(), notFound: "agreement %q does not exist",
		validate: state.ValidateAgreementID, lookup: (*state.Reader).Agreement})
	if err != nil {
		return nil, err
	}
	if err := scopeCheck(ctx, "agreement_id", ag.OrganizationAId, ag.OrganizationBId); err != nil {
		return nil, err
	}
	return &trustfedv1.GetAgreementResponse{Agreement: ag, Meta: meta}, nil
}

// ListAgreements lists agreements in id order, optionally those of one organisation.
func (s *adminService) ListAgreements(ctx context.Context, req *trustfedv1.ListAgreementsRequest) (*trustfedv1.ListAgreementsResponse, error) {
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

// ProposeAdminChange records a sensitive admin change with its proposer's
// approval. The leader checks it against the current state first so that a
// bad change is refused with a precise error before anything is proposed;
// every replica checks it again, signatures included, when applying.
func (s *adminService) ProposeAdminChange(ctx context.Context, req *trustfedv1.ProposeAdminChangeRequest) (*trustfedv1.ProposeAdminChangeResponse, error) {
	if _, err := state.ValidateAdminChange(s.cfg.Verifier, req.GetChange(), s.clock()); err != nil {
		return nil, err
	}
	if err := validateAdminSignature(req.GetApproval()); err != nil {
		return nil, err
	}
	cmd := &commandv1.ProposeAdminChange{Change: req.Change, Approval: req.Approval}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	rec, err := s.appliedAdminChange(state.AdminChangeID(req.Change))
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ProposeAdminChangeResponse{Change: rec}, nil
}

// ApproveAdminChange adds one admin's approval to a pending change.
func (s *adminService) ApproveAdminChange(ctx context.Context, req *trustfedv1.ApproveAdminChangeRequest) (*trustfedv1.ApproveAdminChangeResponse, error) {
	if err := state.ValidateAdminChangeID("change_id", req.GetChangeId()); err != nil {
		return nil, err
	}
	if err := validateAdminSignature(req.GetApproval()); err != nil {
		return nil, err
	}
	cmd := &commandv1.ApproveAdminChange{ChangeId: req.ChangeId, Approval: req.Approval}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	rec, err := s.appliedAdminChange(req.ChangeId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ApproveAdminChangeResponse{Change: rec}, nil
}

// GetAdminChange returns one change with its approvals.
func (s *adminService) GetAdminChange(ctx context.Context, req *trustfedv1.GetAdminChangeRequest) (*trustfedv1.GetAdminChangeResponse, error) {
	rec, r, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.AdminChangeRecord]{
		field: "change_id", id: req.GetChangeId(), notFound: "change %s does not exist",
		validate: state.ValidateAdminChangeID, lookup: (*state.Reader).AdminChange})
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetAdminChangeResponse{Change: s.presentChange(r, rec), Meta: meta}, nil
}

// ListAdminChanges lists changes in id order, optionally only pending ones.
func (s *adminService) ListAdminChanges(ctx context.Context, req *trustfedv1.ListAdminChangesRequest) (*trustfedv1.ListAdminChangesResponse, error) {
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	recs, next := r.AdminChanges(after, pageSize(req.GetPageSize()), req.GetPendingOnly(), s.clock())
	out := make([]*trustfedv1.AdminChangeRecord, len(recs))
	for i, rec := range recs {
		out[i] = s.presentChange(r, rec)
	}
	return &trustfedv1.ListAdminChangesResponse{Changes: out, NextPageToken: encodePageToken(next), Meta: meta}, nil
}

// ListAdmins lists the federation's admins, active and removed.
func (s *adminService) ListAdmins(ctx context.Context, req *trustfedv1.ListAdminsRequest) (*trustfedv1.ListAdminsResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ListAdminsResponse{Admins: r.Admins(), Meta: meta}, nil
}

// ApproveOrganization admits a PENDING registration; onboarding starts now.
func (s *adminService) ApproveOrganization(ctx context.Context, req *trustfedv1.ApproveOrganizationRequest) (*trustfedv1.ApproveOrganizationResponse, error) {
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
func (s *adminService) GetIssuer(ctx context.Context, req *trustfedv1.GetIssuerRequest) (*trustfedv1.GetIssuerResponse, error) {
	is, _, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.Issuer]{
		field: "issuer_id", id: req.GetIssuerId(), notFound: "issuer %q does not exist",
		validate: state.ValidateOrganizationID, lookup: (*state.Reader).Issuer})
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetIssuerResponse{Issuer: is, Meta: meta}, nil
}

// ListIssuers lists every issuer.
func (s *adminService) ListIssuers(ctx context.Context, req *trustfedv1.ListIssuersRequest) (*trustfedv1.ListIssuersResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ListIssuersResponse{Issuers: r.Issuers(), Meta: meta}, nil
}

// GetFederationPolicy returns the federation policy.
func (s *adminService) GetFederationPolicy(ctx context.Context, req *trustfedv1.GetFederationPolicyRequest) (*trustfedv1.GetFederationPolicyResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetFederationPolicyResponse{Policy: r.FederationPolicy(), Meta: meta}, nil
}

func validateAdminSignature(a *trustfedv1.AdminSignature) error {
	switch {
	case a == nil:
		return state.Invalid("approval", "is required: the admin's signature over the change bytes")
	case len(a.PublicKey) != 32:
		return state.Invalid("approval.public_key", "must be a raw 32-byte ed25519 public key, got %d bytes", len(a.PublicKey))
	case len(a.Signature) != 64:
		return state.Invalid("approval.signature", "must be a 64-byte ed25519 signature, got %d bytes", len(a.Signature))
	}
	return nil
}

// appliedAdminChange reads a change record on the leader right after a
// command about it was applied here.
func (s *Server) appliedAdminChange(id string) (*trustfedv1.AdminChangeRecord, error) {
	r := s.store.Read()
	rec, ok := r.AdminChange(id)
	if !ok {
		return nil, fmt.Errorf("admin change %q missing right after it was applied", id)
	}
	return s.presentChange(r, rec), nil
}

// presentChange is a record as answered: decoded content, the status at
// the current time (a pending change past its expiry is EXPIRED) and, once
// applied, the cascades it started (read from r).
func (s *Server) presentChange(r *state.Reader, rec *trustfedv1.AdminChangeRecord) *trustfedv1.AdminChangeRecord {
	out := proto.CloneOf(rec)
	var c trustfedv1.AdminChange
	if err := proto.Unmarshal(rec.Change, &c); err == nil {
		out.Content = &c
	}
	out.Status = state.ChangeStatus(rec, s.clock())
	if out.Status == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
		out.CascadeIds = r.CascadeIDsAt(rec.ApplyIndex)
	}
	return out
}

// ImportAgreements writes many agreements, each signed by both parties, in
// one Raft command. Here only what the state machine does not check is
// checked (the batch's size, each item's size and the actions its scope
// names); the state machine checks every item as ProposeAgreement and the
// two SignAgreement calls are checked when applied, signatures included,
// once (not here and again there: that is what makes a bulk load fast),
// and applies the batch whole or refuses it naming the item.
func (s *adminService) ImportAgreements(ctx context.Context, req *trustfedv1.ImportAgreementsRequest) (*trustfedv1.ImportAgreementsResponse, error) {
	if err := state.ValidateImportSize(len(req.GetAgreements())); err != nil {
		return nil, err
	}
	ids := make([]string, len(req.Agreements))
	for i, item := range req.Agreements {
		at := fmt.Sprintf("agreements[%d]", i)
		if len(item.GetTerms()) > maxSignedBytes {
			return nil, state.Invalid(at+".terms", "is larger than %d bytes", maxSignedBytes)
		}
		var t trustfedv1.AgreementTerms
		if err := proto.Unmarshal(item.GetTerms(), &t); err != nil || len(item.GetTerms()) == 0 {
			return nil, state.Invalid(at+".terms", "is not a serialized trustfed.v1.AgreementTerms")
		}
		for j, a := range t.GetScope().GetAllowedActions() {
			if _, ok := policy.RequiredLevel(a); !ok {
				return nil, state.Invalid(fmt.Sprintf("%s.terms.scope.allowed_actions[%d]", at, j), "unknown action %q (one of %v)", a, policy.Actions())
			}
		}
		ids[i] = t.AgreementId
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	index, err := s.propose(ctx, &commandv1.ImportAgreements{Agreements: req.Agreements}, rid)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ImportAgreementsResponse{AgreementIds: ids, Index: index}, nil
}
