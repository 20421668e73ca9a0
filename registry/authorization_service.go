package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RequestAuthorization opens a dual-authorisation request for an
// interaction that is denied only because its controls require two
// approvals. It expires after the federation's freshness window and, once
// granted, backs max_uses ALLOW decisions (one unless the request asks for
// more, at most state.MaxAuthorizationUses).
func (s *Server) RequestAuthorization(ctx context.Context, req *trustfedv1.RequestAuthorizationRequest) (*trustfedv1.RequestAuthorizationResponse, error) {
	check := req.GetCheck()
	if check == nil {
		return nil, state.Invalid("check", "is required")
	}
	if check.AuthorizationId != "" {
		return nil, state.Invalid("check.authorization_id", "must be empty when requesting an authorization")
	}
	if err := state.ValidateMaxUses("max_uses", req.GetMaxUses()); err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	resp, r, now, err := s.decide(ctx, check)
	if err != nil {
		return nil, err
	}
	if !resp.RequiresDualAuthorization {
		return nil, state.FailedPrecondition("check", "this interaction does not require dual authorisation (decision: %v)", resp.Decision)
	}
	if i := slices.IndexFunc(resp.Reasons, func(r *trustfedv1.Reason) bool { return r.Code != policy.ReasonDualAuthorization }); i >= 0 {
		return nil, state.FailedPrecondition("check", "the interaction is denied for another reason too: %s: %s", resp.Reasons[i].Code, resp.Reasons[i].Message)
	}
	sum := sha256.Sum256([]byte("authorization\x00" + rid))
	st := &trustfedv1.AuthorizationStatement{
		AuthorizationId:    "auth-" + hex.EncodeToString(sum[:8]),
		FromOrganizationId: check.FromOrganizationId,
		ToOrganizationId:   check.ToOrganizationId,
		Action:             check.Action,
		DataTypes:          check.DataTypes,
		Value:              check.Value,
		ExpireTime:         timestamppb.New(now.Add(r.FreshnessWindow()).Truncate(1e9)),
		MaxUses:            max(req.GetMaxUses(), 1),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal authorization statement: %w", err)
	}
	if _, err := s.propose(ctx, &commandv1.CreateAuthorization{Statement: b}, rid); err != nil {
		return nil, err
	}
	a, _ := s.store.Read().Authorization(st.AuthorizationId)
	return &trustfedv1.RequestAuthorizationResponse{Authorization: a}, nil
}

// GetAuthorization returns a dual-authorisation request.
func (s *Server) GetAuthorization(ctx context.Context, req *trustfedv1.GetAuthorizationRequest) (*trustfedv1.GetAuthorizationResponse, error) {
	if err := state.ValidateAuthorizationID("authorization_id", req.GetAuthorizationId()); err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	a, ok := r.Authorization(req.AuthorizationId)
	if !ok {
		return nil, state.NotFound("authorization_id", "authorization %q does not exist", req.AuthorizationId)
	}
	if err := scopeCheck(ctx, "authorization_id", a.GetParsedStatement().GetFromOrganizationId(), a.GetParsedStatement().GetToOrganizationId()); err != nil {
		return nil, err
	}
	return &trustfedv1.GetAuthorizationResponse{Authorization: a, Meta: meta}, nil
}

// ApproveAuthorization adds one party's signed approval.
func (s *Server) ApproveAuthorization(ctx context.Context, req *trustfedv1.ApproveAuthorizationRequest) (*trustfedv1.ApproveAuthorizationResponse, error) {
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
