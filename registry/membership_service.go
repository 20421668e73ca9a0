package registry

import (
	"context"
	"fmt"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// membershipService implements trustfedv1.MembershipService on the shared core.
type membershipService struct {
	trustfedv1.UnsafeMembershipServiceServer
	*Server
}

// maxSignedBytes bounds a signed document (registration, termination).
const maxSignedBytes = 64 << 10

// RegisterOrganization checks a signed registration on the leader at its
// time, proposes it, and returns the PENDING organisation. Every replica
// checks it again when applying.
func (s *membershipService) RegisterOrganization(ctx context.Context, req *trustfedv1.RegisterOrganizationRequest) (*trustfedv1.RegisterOrganizationResponse, error) {
	if len(req.GetRegistration()) > maxSignedBytes {
		return nil, state.Invalid("registration", "is larger than %d bytes", maxSignedBytes)
	}
	org, err := state.CheckRegistration(s.store.Read(), s.cfg.Verifier, req.GetRegistration(), req.GetSignature(), s.clock())
	if err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &commandv1.RegisterOrganization{Registration: req.Registration, Signature: req.Signature}, rid); err != nil {
		return nil, err
	}
	got, err := s.appliedOrganization(org.Id)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.RegisterOrganizationResponse{Organization: got}, nil
}

// SubmitPassport replaces an organisation's passport (renewal).
func (s *membershipService) SubmitPassport(ctx context.Context, req *trustfedv1.SubmitPassportRequest) (*trustfedv1.SubmitPassportResponse, error) {
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if len(req.GetPassport()) > maxSignedBytes {
		return nil, state.Invalid("passport", "is larger than %d bytes", maxSignedBytes)
	}
	if _, err := state.CheckPassportSubmission(s.store.Read(), s.cfg.Verifier, req.OrganizationId, req.Passport, req.Signature, s.clock()); err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &commandv1.SubmitPassport{OrganizationId: req.OrganizationId, Passport: req.Passport, Signature: req.Signature}, rid); err != nil {
		return nil, err
	}
	got, err := s.appliedOrganization(req.OrganizationId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.SubmitPassportResponse{Organization: got}, nil
}

// SetWebhook checks an organisation's signed webhook settings on the leader
// with the same code every replica runs again when applying, then
// proposes them: the next notification to that organisation uses them.
func (s *membershipService) SetWebhook(ctx context.Context, req *trustfedv1.SetWebhookRequest) (*trustfedv1.SetWebhookResponse, error) {
	if req.GetSettings() == nil {
		return nil, state.Invalid("settings", "is required")
	}
	// The bytes the organisation signed: the settings' deterministic
	// serialization (client.NewWebhookSettings makes the same).
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req.GetSettings())
	if err != nil {
		return nil, state.Invalid("settings", "cannot be serialized: %v", err)
	}
	if len(b) > maxSignedBytes {
		return nil, state.Invalid("settings", "is larger than %d bytes", maxSignedBytes)
	}
	org, err := state.CheckWebhookSettings(s.store.Read(), s.cfg.Verifier, b, req.GetSignature(), s.clock())
	if err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.SetWebhook{Settings: b, Signature: req.GetSignature()}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedOrganization(org.Id)
	if err != nil {
		return nil, err
	}
	s.log.Info("webhook settings changed", "organization_id", got.Id, "endpoints", len(got.NotificationEndpoints), "ca_pem_bytes", len(got.WebhookCaCertificatesPem))
	return &trustfedv1.SetWebhookResponse{Organization: got}, nil
}

// ProposeAgreement records agreement terms (PENDING until both parties sign).
// The terms are serialized here, once: those exact bytes are what both
// parties sign and what every signature is checked against.
func (s *membershipService) ProposeAgreement(ctx context.Context, req *trustfedv1.ProposeAgreementRequest) (*trustfedv1.ProposeAgreementResponse, error) {
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	for i, a := range req.GetScope().GetAllowedActions() {
		if _, ok := policy.RequiredLevel(a); !ok {
			return nil, state.Invalid(fmt.Sprintf("scope.allowed_actions[%d]", i), "unknown action %q (one of %v)", a, policy.Actions())
		}
	}
	notBefore := req.GetNotBefore()
	if notBefore == nil {
		// Second precision, so the terms a retry builds are identical.
		notBefore = timestamppb.New(s.clock().UTC().Truncate(1e9))
	}
	terms := &trustfedv1.AgreementTerms{
		AgreementId:     agreementID(rid),
		OrganizationAId: req.GetOrganizationAId(),
		OrganizationBId: req.GetOrganizationBId(),
		Scope:           req.GetScope(),
		NotBefore:       notBefore,
		NotAfter:        req.GetNotAfter(),
		Termination:     req.GetTermination(),
	}
	if terms.Termination == nil {
		terms.Termination = &trustfedv1.TerminationConditions{OnPassportExpiry: true}
	}
	// Revocation or suspension of a party always ends an agreement; the
	// terms state it so the signers see it.
	terms.Termination.OnPartyRevokedOrSuspended = true
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(terms)
	if err != nil {
		return nil, fmt.Errorf("marshal terms: %w", err)
	}
	if _, err := state.CheckTerms(s.store.Read(), b); err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &commandv1.ProposeAgreement{Terms: b}, rid); err != nil {
		return nil, err
	}
	return &trustfedv1.ProposeAgreementResponse{Agreement: s.appliedAgreement(terms.AgreementId)}, nil
}

// SignAgreement adds one party's signature over the agreement's terms.
func (s *membershipService) SignAgreement(ctx context.Context, req *trustfedv1.SignAgreementRequest) (*trustfedv1.SignAgreementResponse, error) {
	if err := state.ValidateAgreementID("agreement_id", req.GetAgreementId()); err != nil {
		return nil, err
	}
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if _, err := state.CheckSignature(s.store.Read(), s.cfg.Verifier, req.AgreementId, req.OrganizationId, req.Signature, s.clock()); err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &commandv1.SignAgreement{AgreementId: req.AgreementId, OrganizationId: req.OrganizationId, Signature: req.Signature}, rid); err != nil {
		return nil, err
	}
	return &trustfedv1.SignAgreementResponse{Agreement: s.appliedAgreement(req.AgreementId)}, nil
}

// TerminateAgreement ends an agreement at the signed request of a party.
func (s *membershipService) TerminateAgreement(ctx context.Context, req *trustfedv1.TerminateAgreementRequest) (*trustfedv1.TerminateAgreementResponse, error) {
	if len(req.GetTermination()) > maxSignedBytes {
		return nil, state.Invalid("termination", "is larger than %d bytes", maxSignedBytes)
	}
	t, _, err := state.CheckTermination(s.store.Read(), s.cfg.Verifier, req.GetTermination(), req.GetSignature())
	if err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	if _, err := s.propose(ctx, &commandv1.TerminateAgreement{Termination: req.Termination, Signature: req.Signature}, rid); err != nil {
		return nil, err
	}
	return &trustfedv1.TerminateAgreementResponse{Agreement: s.appliedAgreement(t.AgreementId)}, nil
}

// appliedAgreement reads an agreement on the leader right after a command
// about it was applied here.
func (s *Server) appliedAgreement(id string) *trustfedv1.Agreement {
	ag, _ := s.store.Read().Agreement(id)
	return ag
}

// ApproveAuthorization adds one party's signed approval.
func (s *membershipService) ApproveAuthorization(ctx context.Context, req *trustfedv1.ApproveAuthorizationRequest) (*trustfedv1.ApproveAuthorizationResponse, error) {
	if err := state.ValidateAuthorizationID("authorization_id", req.GetAuthorizationId()); err != nil {
		return nil, err
	}
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if _, err := state.CheckApproval(s.store.Read(), s.cfg.Verifier, req.AuthorizationId, req.OrganizationId, req.Signature, s.clock()); err != nil {
		return nil, err
	}
	cmd := &commandv1.ApproveAuthorization{AuthorizationId: req.AuthorizationId, OrganizationId: req.OrganizationId, Signature: req.Signature}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	a, _ := s.store.Read().Authorization(req.AuthorizationId)
	return &trustfedv1.ApproveAuthorizationResponse{Authorization: a}, nil
}
