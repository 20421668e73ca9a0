package registry

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Bearer tokens for people (AccessService): created by admins with a
// random secret that is returned once and stored only as its SHA-256,
// scoped by role (and organisation), expiring, revocable, listed without
// secrets. The state package holds the rules (registry/state/tokens.go).

// CreateToken creates a token and returns its secret, the only time it is
// shown.
func (s *Server) CreateToken(ctx context.Context, req *trustfedv1.CreateTokenRequest) (*trustfedv1.CreateTokenResponse, error) {
	role, err := stateRole(req.GetRole())
	if err != nil {
		return nil, err
	}
	if err := state.ValidateTokenScope("role", "organization_id", role, req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if err := state.ValidateTokenDescription("description", req.GetDescription()); err != nil {
		return nil, err
	}
	ttl := state.DefaultTokenTTL
	if d := req.GetTtl(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, state.Invalid("ttl", "%v", err)
		}
		ttl = d.AsDuration()
	}
	if ttl < state.MinTokenTTL || ttl > state.MaxTokenTTL {
		return nil, state.Invalid("ttl", "%v is out of range %v..%v", ttl, state.MinTokenTTL, state.MaxTokenTTL)
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	id, secret, err := attestation.NewToken(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("create token: %w", err)
	}
	hash := attestation.TokenHash(secret)
	// Whole seconds: the expiry is shown to people. Truncating never makes
	// the lifetime longer than asked, and the command is stamped later than
	// now, so the state machine's 366-day bound holds.
	expire := s.clock().Add(ttl).Truncate(time.Second)
	cmd := &commandv1.PutToken{Token: &commandv1.Token{
		Id:             id,
		SecretSha256:   hash[:],
		Role:           role,
		OrganizationId: req.GetOrganizationId(),
		Description:    req.GetDescription(),
		ExpireTime:     timestamppb.New(expire),
	}}
	if _, err := s.propose(ctx, cmd, rid); err != nil {
		var se *state.Error
		if errors.As(err, &se) && se.Field == "request_id" {
			// A retry of a request that was applied: its secret was in the
			// first answer only, and a new one cannot stand in for it.
			return nil, state.FailedPrecondition("request_id", "request id %q was already used; if an earlier attempt created a token, its secret was only in that answer: revoke it (ListTokens shows it) and create another", rid)
		}
		return nil, err
	}
	tok, err := applied(s.store, "token", id, (*state.Reader).Token)
	if err != nil {
		return nil, err
	}
	s.log.Info("token created", "token_id", id, "role", role, "organization_id", tok.OrganizationId, "expire_time", expire)
	return &trustfedv1.CreateTokenResponse{Token: tokenInfo(tok), Secret: secret}, nil
}

// ListTokens lists tokens in id order, without their secrets: those usable
// now, or every one with include_inactive; optionally one organisation's.
func (s *Server) ListTokens(ctx context.Context, req *trustfedv1.ListTokensRequest) (*trustfedv1.ListTokensResponse, error) {
	after, limit, err := listArgs(req.GetOrganizationId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	toks, next := r.ListTokens(req.GetOrganizationId(), req.GetIncludeInactive(), s.clock(), after, limit)
	out := make([]*trustfedv1.TokenInfo, len(toks))
	for i, t := range toks {
		out[i] = tokenInfo(t)
	}
	return &trustfedv1.ListTokensResponse{Tokens: out, NextPageToken: encodePageToken(next), Index: meta.Index}, nil
}

// RevokeToken revokes a token: from the next call on, on every server, it
// authenticates nothing.
func (s *Server) RevokeToken(ctx context.Context, req *trustfedv1.RevokeTokenRequest) (*trustfedv1.RevokeTokenResponse, error) {
	if err := state.ValidateTokenID("token_id", req.GetTokenId()); err != nil {
		return nil, err
	}
	if err := state.ValidateRevokeReason("reason", req.GetReason()); err != nil {
		return nil, err
	}
	cmd := &commandv1.RevokeToken{TokenId: req.GetTokenId(), Reason: req.GetReason()}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	tok, err := applied(s.store, "token", req.GetTokenId(), (*state.Reader).Token)
	if err != nil {
		return nil, err
	}
	s.log.Info("token revoked", "token_id", tok.Id, "organization_id", tok.OrganizationId)
	return &trustfedv1.RevokeTokenResponse{Token: tokenInfo(tok)}, nil
}

// tokenInfo is what the API shows of a stored token: everything but the
// secret's hash.
func tokenInfo(t *commandv1.Token) *trustfedv1.TokenInfo {
	return &trustfedv1.TokenInfo{
		Id:             t.GetId(),
		Role:           apiRole(t.GetRole()),
		OrganizationId: t.GetOrganizationId(),
		Description:    t.GetDescription(),
		CreateTime:     t.GetCreateTime(),
		ExpireTime:     t.GetExpireTime(),
		CreatedBy:      t.GetCreatedBy(),
		RevokeTime:     t.GetRevokeTime(),
		RevokeReason:   t.GetRevokeReason(),
		CreateIndex:    t.GetCreateIndex(),
	}
}

var tokenRoles = map[trustfedv1.TokenRole]commandv1.Role{
	trustfedv1.TokenRole_TOKEN_ROLE_ADMIN:      commandv1.Role_ROLE_ADMIN,
	trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE: commandv1.Role_ROLE_GOVERNANCE,
	trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR:  commandv1.Role_ROLE_REGULATOR,
	trustfedv1.TokenRole_TOKEN_ROLE_MONITOR:    commandv1.Role_ROLE_MONITOR,
}

// stateRole is the stored role of an API role.
func stateRole(r trustfedv1.TokenRole) (commandv1.Role, error) {
	if r == trustfedv1.TokenRole_TOKEN_ROLE_UNSPECIFIED {
		return 0, state.Invalid("role", "is required (admin, governance, regulator or monitor)")
	}
	role, ok := tokenRoles[r]
	if !ok {
		return 0, state.Invalid("role", "unknown role %d", int32(r))
	}
	return role, nil
}

// apiRole is the API role of a stored role.
func apiRole(r commandv1.Role) trustfedv1.TokenRole {
	for api, st := range tokenRoles {
		if st == r {
			return api
		}
	}
	return trustfedv1.TokenRole_TOKEN_ROLE_UNSPECIFIED
}
