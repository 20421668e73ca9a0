package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// accessService implements trustfedv1.AccessService on the shared core.
type accessService struct {
	trustfedv1.UnsafeAccessServiceServer
	*Server
}

// EnrolMemberNode checks an organisation's signed enrolment on the leader,
// proposes it, and returns the enrolled node. Every replica verifies the
// signature again when applying it.
func (s *accessService) EnrolMemberNode(ctx context.Context, req *trustfedv1.EnrolMemberNodeRequest) (*trustfedv1.EnrolMemberNodeResponse, error) {
	if req.GetEnrolment() == nil {
		return nil, state.Invalid("enrolment", "is required")
	}
	if org := req.GetOrganizationId(); org != "" {
		if err := state.ValidateOrganizationID("organization_id", org); err != nil {
			return nil, err
		}
		if want := req.GetEnrolment().GetOrganizationId(); org != want {
			return nil, state.Invalid("organization_id", "%q is not the enrolment's organisation (enrolment.organization_id)", org)
		}
	}
	// The bytes the organisation signed: the enrolment's deterministic
	// serialization (client.SignMemberEnrolment makes the same).
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req.GetEnrolment())
	if err != nil {
		return nil, state.Invalid("enrolment", "cannot be serialized: %v", err)
	}
	if len(b) > maxSignedBytes {
		return nil, state.Invalid("enrolment", "is larger than %d bytes", maxSignedBytes)
	}
	n, err := state.CheckMemberEnrolment(s.store.Read(), s.cfg.Verifier, b, req.GetSignature(), s.clock())
	if err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.EnrolMemberNode{Enrolment: b, Signature: req.GetSignature()}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedMemberNode(n.OrganizationId, n.NodeId)
	if err != nil {
		return nil, err
	}
	s.log.Info("member node enrolled", "organization_id", got.OrganizationId, "node_id", got.NodeId, "key", attestation.Fingerprint(got.PublicKey))
	return &trustfedv1.EnrolMemberNodeResponse{Node: got}, nil
}

// ListMemberNodes lists member nodes in organisation then node id order
// (one organisation's if organization_id is set), active ones unless
// include_removed.
func (s *accessService) ListMemberNodes(ctx context.Context, req *trustfedv1.ListMemberNodesRequest) (*trustfedv1.ListMemberNodesResponse, error) {
	after, limit, err := listArgs(req.GetOrganizationId(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	nodes, next := r.ListMemberNodes(req.GetOrganizationId(), req.GetIncludeRemoved(), after, limit)
	return &trustfedv1.ListMemberNodesResponse{Nodes: nodes, NextPageToken: encodePageToken(next), Index: meta.Index}, nil
}

// RemoveMemberNode removes a member node: from the next call on, on every
// server, its certificates authenticate nothing and it gets no new one.
func (s *accessService) RemoveMemberNode(ctx context.Context, req *trustfedv1.RemoveMemberNodeRequest) (*trustfedv1.RemoveMemberNodeResponse, error) {
	cmd := &commandv1.RemoveMemberNode{OrganizationId: req.GetOrganizationId(), NodeId: req.GetNodeId(), Reason: req.GetReason()}
	if err := state.ValidateMemberRemoval(cmd); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedMemberNode(cmd.OrganizationId, cmd.NodeId)
	if err != nil {
		return nil, err
	}
	s.log.Info("member node removed", "organization_id", got.OrganizationId, "node_id", got.NodeId)
	return &trustfedv1.RemoveMemberNodeResponse{Node: got}, nil
}

// GetMemberChallenge returns a fresh challenge for an enrolled, active
// member node, signed with the registry's current signing key. It needs no
// credentials and changes nothing: the challenge is good for
// MemberChallengeTTL, and IssueMemberCertificate accepts it once.
func (s *accessService) GetMemberChallenge(ctx context.Context, req *trustfedv1.GetMemberChallengeRequest) (*trustfedv1.GetMemberChallengeResponse, error) {
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if err := state.ValidateMemberNodeID("node_id", req.GetNodeId()); err != nil {
		return nil, err
	}
	r, _, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	if _, err := activeMember(r, "", req.OrganizationId, req.NodeId); err != nil {
		return nil, err
	}
	now := s.clock().UTC()
	signer, keyID, err := s.decisionSigner(r, now)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, state.MemberNonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("challenge nonce: %w", err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.MemberChallenge{
		OrganizationId: req.OrganizationId,
		NodeId:         req.NodeId,
		Nonce:          nonce,
		IssueTime:      timestamppb.New(now),
		ExpireTime:     timestamppb.New(now.Add(MemberChallengeTTL)),
		RegistryKeyId:  keyID,
	})
	if err != nil {
		return nil, fmt.Errorf("marshal challenge: %w", err)
	}
	sig, err := signer.Sign(ctx, attestation.PurposeMemberChallenge, b)
	if err != nil {
		return nil, fmt.Errorf("sign challenge: %w", err)
	}
	return &trustfedv1.GetMemberChallengeResponse{Challenge: b, RegistrySignature: sig}, nil
}

// IssueMemberCertificate exchanges a registry challenge signed by a member
// node's enrolled key for a client certificate for that key. The challenge
// must carry a valid registry signature, be unexpired and never used
// before; its single use is replicated (ISSUE_MEMBER_CERTIFICATE) before the
// certificate is handed out.
func (s *accessService) IssueMemberCertificate(ctx context.Context, req *trustfedv1.IssueMemberCertificateRequest) (*trustfedv1.IssueMemberCertificateResponse, error) {
	if s.cfg.CA == nil {
		return nil, state.FailedPrecondition("", "this server holds no federation CA key and cannot issue member certificates: start it with -tls-ca-key")
	}
	ch, err := parseChallenge(req.GetChallenge())
	if err != nil {
		return nil, err
	}
	validity := min(DefaultMemberCertTTL, s.memberCertTTL())
	if d := req.GetValidity(); d != nil {
		if err := d.CheckValid(); err != nil {
			return nil, state.Invalid("validity", "%v", err)
		}
		validity = d.AsDuration()
	}
	if validity > s.memberCertTTL() || validity < MinMemberCertTTL {
		return nil, state.Invalid("validity", "%v is out of range %v..%v (the server's -member-cert-ttl)", validity, MinMemberCertTTL, s.memberCertTTL())
	}
	r, _, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	if err := verifyChallengeSignature(r, ch, req.Challenge, req.GetRegistrySignature()); err != nil {
		return nil, err
	}
	now := s.clock().UTC()
	if exp := ch.ExpireTime.AsTime(); !now.Before(exp) {
		return nil, state.FailedPrecondition("challenge.expire_time", "the challenge expired at %s: ask for a new one", exp.Format(time.RFC3339))
	}
	n, err := activeMember(r, "challenge.", ch.OrganizationId, ch.NodeId)
	if err != nil {
		return nil, err
	}
	if err := attestation.Verify(ed25519.PublicKey(n.PublicKey), attestation.PurposeMemberChallenge, req.Challenge, req.GetNodeSignature()); err != nil {
		return nil, state.PermissionDenied("node_signature", "does not verify with the key enrolled for member node %q of %q: %v", ch.NodeId, ch.OrganizationId, err)
	}
	if r.NonceUsed(ch.Nonce) {
		return nil, state.FailedPrecondition("challenge.nonce", "challenge was already used")
	}
	certPEM, serial, notAfter, err := s.cfg.CA.IssueMember(ch.OrganizationId, ch.NodeId, ed25519.PublicKey(n.PublicKey), now, validity)
	if err != nil {
		return nil, fmt.Errorf("member certificate: %w", err)
	}
	// The node proved it holds its key: the command and its audit entry
	// name it.
	ctx = withPrincipal(ctx, Principal{ID: memberPrincipalID(ch.OrganizationId, ch.NodeId), Role: RoleMember, Organization: ch.OrganizationId, MemberNode: ch.NodeId})
	cmd := &commandv1.IssueMemberCertificate{
		OrganizationId:  ch.OrganizationId,
		NodeId:          ch.NodeId,
		Nonce:           ch.Nonce,
		NonceExpireTime: ch.ExpireTime,
		Serial:          serial,
		NotAfter:        timestamppb.New(notAfter),
	}
	if err := s.proposeWithID(ctx, cmd, ""); err != nil {
		return nil, err
	}
	// Applied here (the leader): the node is still the one whose key the
	// certificate carries, or it was removed or re-enrolled meanwhile.
	if cur, ok := s.store.Read().MemberNode(ch.OrganizationId, ch.NodeId); !ok || cur.Status != trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE || !bytes.Equal(cur.PublicKey, n.PublicKey) {
		return nil, state.FailedPrecondition("challenge.node_id", "member node %q of %q was removed or re-enrolled meanwhile", ch.NodeId, ch.OrganizationId)
	}
	s.log.Info("member certificate issued", "organization_id", ch.OrganizationId, "node_id", ch.NodeId, "serial", serial, "not_after", notAfter)
	return &trustfedv1.IssueMemberCertificateResponse{
		CertificatePem: string(certPEM),
		CaPem:          string(s.cfg.CA.CertPEM),
		NotAfter:       timestamppb.New(notAfter),
		Serial:         serial,
	}, nil
}

// CreateToken creates a token and returns its secret, the only time it is
// shown.
func (s *accessService) CreateToken(ctx context.Context, req *trustfedv1.CreateTokenRequest) (*trustfedv1.CreateTokenResponse, error) {
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
func (s *accessService) ListTokens(ctx context.Context, req *trustfedv1.ListTokensRequest) (*trustfedv1.ListTokensResponse, error) {
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
func (s *accessService) RevokeToken(ctx context.Context, req *trustfedv1.RevokeTokenRequest) (*trustfedv1.RevokeTokenResponse, error) {
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

// Bearer tokens for people (AccessService): created by admins with a
// random secret that is returned once and stored only as its SHA-256,
// scoped by role (and organisation), expiring, revocable, listed without
// secrets. The state package holds the rules (registry/state/tokens.go).

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

// Member nodes (AccessService): an organisation enrols a node's ed25519
// public key with its own signature; the node asks for a challenge the
// registry signs, signs it with its key, and exchanges it for a short-lived
// client certificate for that same key, issued by the federation CA. Each
// server holds the CA key on its own disk (Config.CA, -tls-ca-key); the
// single use of every challenge is replicated (ISSUE_MEMBER_CERTIFICATE).
// docs/access.md describes the protocol.

// Member certificate lifetimes and challenge limits.
const (
	// DefaultMemberCertTTL is the default (and, unless the server is
	// configured otherwise, the longest) lifetime of a member certificate.
	DefaultMemberCertTTL = 24 * time.Hour
	// MinMemberCertTTL is the shortest lifetime a node may ask for.
	MinMemberCertTTL = time.Minute
	// MemberChallengeTTL is how long a challenge may be answered.
	MemberChallengeTTL = 2 * time.Minute
	// maxChallengeBytes bounds a challenge sent back to the registry.
	maxChallengeBytes = 1024
)

// parseChallenge decodes a challenge sent back and checks its fields.
func parseChallenge(b []byte) (*trustfedv1.MemberChallenge, error) {
	if len(b) == 0 {
		return nil, state.Invalid("challenge", "is required")
	}
	if len(b) > maxChallengeBytes {
		return nil, state.Invalid("challenge", "is larger than %d bytes", maxChallengeBytes)
	}
	var ch trustfedv1.MemberChallenge
	if err := proto.Unmarshal(b, &ch); err != nil {
		return nil, state.Invalid("challenge", "is not a serialized trustfed.v1.MemberChallenge: %v", err)
	}
	if err := state.ValidateOrganizationID("challenge.organization_id", ch.OrganizationId); err != nil {
		return nil, err
	}
	if err := state.ValidateMemberNodeID("challenge.node_id", ch.NodeId); err != nil {
		return nil, err
	}
	if len(ch.Nonce) != state.MemberNonceSize {
		return nil, state.Invalid("challenge.nonce", "must be %d bytes, got %d", state.MemberNonceSize, len(ch.Nonce))
	}
	if ch.ExpireTime == nil || ch.ExpireTime.CheckValid() != nil {
		return nil, state.Invalid("challenge.expire_time", "is missing or invalid")
	}
	if ch.RegistryKeyId == "" {
		return nil, state.Invalid("challenge.registry_key_id", "is required")
	}
	return &ch, nil
}

// verifyChallengeSignature checks the registry's signature on a member
// challenge: by the endorsed key of the node that issued it (valid and
// unrevoked at its issue time) or, in a cluster without node keys, by the
// registry key.
func verifyChallengeSignature(r *state.Reader, ch *trustfedv1.MemberChallenge, raw, sig []byte) error {
	if _, ok := r.NodeKey(ch.RegistryKeyId); ok {
		if _, err := r.VerifyNodeSignature(ch.RegistryKeyId, attestation.PurposeMemberChallenge, raw, sig, ch.IssueTime.AsTime()); err != nil {
			return state.PermissionDenied("registry_signature", "the challenge was not issued by this registry: %v", err)
		}
		return nil
	}
	rk, ok := r.SigningKeyByID(ch.RegistryKeyId)
	if !ok {
		return state.PermissionDenied("challenge.registry_key_id", "%q is not a registry signing key", ch.RegistryKeyId)
	}
	rpub, ok := state.SigningKeyPublic(rk)
	if !ok {
		return state.PermissionDenied("challenge.registry_key_id", "%q is not a registry signing key", ch.RegistryKeyId)
	}
	if err := attestation.Verify(rpub, attestation.PurposeMemberChallenge, raw, sig); err != nil {
		return state.PermissionDenied("registry_signature", "the challenge was not issued by this registry: %v", err)
	}
	return nil
}

// activeMember returns an enrolled, active member node of an ACTIVE
// organisation; errors name the request fields (prefix + organization_id
// or node_id).
func activeMember(r *state.Reader, prefix, org, node string) (*trustfedv1.MemberNode, error) {
	o, ok := r.Organization(org)
	if !ok {
		return nil, state.NotFound(prefix+"organization_id", "organization %q does not exist", org)
	}
	if o.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
		return nil, state.FailedPrecondition(prefix+"organization_id", "organization %q is %s", org, state.OrganizationStatusName(o.Status))
	}
	n, ok := r.MemberNode(org, node)
	if !ok {
		return nil, state.NotFound(prefix+"node_id", "member node %q of %q is not enrolled", node, org)
	}
	if n.Status != trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE {
		return nil, state.FailedPrecondition(prefix+"node_id", "member node %q of %q was removed", node, org)
	}
	return n, nil
}

func (s *Server) memberCertTTL() time.Duration {
	if s.cfg.MemberCertTTL > 0 {
		return s.cfg.MemberCertTTL
	}
	return DefaultMemberCertTTL
}

// appliedMemberNode reads a member node on the leader right after a
// command about it was applied here.
func (s *Server) appliedMemberNode(org, node string) (*trustfedv1.MemberNode, error) {
	n, ok := s.store.Read().MemberNode(org, node)
	if !ok {
		return nil, fmt.Errorf("member node %s/%s missing right after it was applied", org, node)
	}
	return n, nil
}

// memberPrincipalID names a member node in the audit trail.
func memberPrincipalID(org, node string) string { return "member:" + org + "/" + node }
