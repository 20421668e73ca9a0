package registry

import (
	"context"
	"fmt"
	"strings"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Role is what a principal may do.
type Role int

// Roles. Later issues add organisation governance, member node and regulator.
const (
	RoleNone Role = iota
	// RoleAdmin is a federation authority admin (bearer token).
	RoleAdmin
	// RoleNode is another registry server (certificate from the cluster CA).
	RoleNode
)

func (r Role) String() string {
	switch r {
	case RoleAdmin:
		return "admin"
	case RoleNode:
		return "node"
	default:
		return "none"
	}
}

// Principal is the authenticated caller of a request.
type Principal struct {
	// ID names the caller in the audit trail: "token:<id>" or "node:<id>".
	ID   string
	Role Role
	// Organization is the member organisation the principal acts for
	// ("" for federation admins and nodes).
	Organization string
}

type principalKey struct{}

// PrincipalFrom returns the authenticated principal of a request.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

func withPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// methodRoles is the authorisation table: the roles allowed to call each
// method. A method missing here is denied to everyone (default deny); a test
// checks every registered method has an entry.
var methodRoles = map[string][]Role{
	trustfedv1.RegistryService_CheckInteraction_FullMethodName:  {RoleAdmin},
	trustfedv1.RegistryService_GetOrganization_FullMethodName:   {RoleAdmin},
	trustfedv1.RegistryService_ListOrganizations_FullMethodName: {RoleAdmin},
	trustfedv1.RegistryService_GetKeys_FullMethodName:           {RoleNone, RoleAdmin, RoleNode}, // public: see publicMethods
	trustfedv1.AdminService_ApproveOrganization_FullMethodName:  {RoleAdmin},
	trustfedv1.AdminService_UpdateOrganization_FullMethodName:   {RoleAdmin},
	trustfedv1.AdminService_ProposeAdminChange_FullMethodName:   {RoleAdmin},
	trustfedv1.AdminService_ApproveAdminChange_FullMethodName:   {RoleAdmin},
	trustfedv1.AdminService_GetAdminChange_FullMethodName:       {RoleAdmin},
	trustfedv1.AdminService_ListAdminChanges_FullMethodName:     {RoleAdmin},
	trustfedv1.AdminService_ListAdmins_FullMethodName:           {RoleAdmin},
	trustfedv1.AdminService_GetIssuer_FullMethodName:            {RoleAdmin},
	trustfedv1.AdminService_ListIssuers_FullMethodName:          {RoleAdmin},
	trustfedv1.AdminService_GetFederationPolicy_FullMethodName:  {RoleAdmin},
	// Membership requests are authenticated by the organisation's signature
	// over what they submit; until organisations get governance tokens
	// (zero-trust issue) an admin token submits them.
	trustfedv1.MembershipService_RegisterOrganization_FullMethodName: {RoleAdmin},
	trustfedv1.MembershipService_SubmitPassport_FullMethodName:       {RoleAdmin},
	trustfedv1.MembershipService_ProposeAgreement_FullMethodName:     {RoleAdmin},
	trustfedv1.MembershipService_SignAgreement_FullMethodName:        {RoleAdmin},
	trustfedv1.MembershipService_TerminateAgreement_FullMethodName:   {RoleAdmin},
	trustfedv1.MembershipService_ApproveAuthorization_FullMethodName: {RoleAdmin},
	trustfedv1.RegistryService_RequestAuthorization_FullMethodName:   {RoleAdmin},
	trustfedv1.RegistryService_GetAuthorization_FullMethodName:       {RoleAdmin},
	trustfedv1.AdminService_GetAgreement_FullMethodName:              {RoleAdmin},
	trustfedv1.AdminService_ListAgreements_FullMethodName:            {RoleAdmin},
	// Member calls; organisations get their own credentials with the
	// zero-trust issue, until then an admin token carries them.
	trustfedv1.CascadeService_OpenSession_FullMethodName:          {RoleAdmin},
	trustfedv1.CascadeService_HeartbeatSession_FullMethodName:     {RoleAdmin},
	trustfedv1.CascadeService_CloseSession_FullMethodName:         {RoleAdmin},
	trustfedv1.CascadeService_GetSession_FullMethodName:           {RoleAdmin},
	trustfedv1.CascadeService_GetOrganizationGraph_FullMethodName: {RoleAdmin},
	trustfedv1.CascadeService_WatchEvents_FullMethodName:          {RoleAdmin},
	trustfedv1.CascadeService_AckEvent_FullMethodName:             {RoleAdmin},
	trustfedv1.CascadeService_GetCascade_FullMethodName:           {RoleAdmin},
	trustfedv1.CascadeService_ListCascades_FullMethodName:         {RoleAdmin},
	trustfedv1.ClusterService_Status_FullMethodName:               {RoleAdmin, RoleNode},
	trustfedv1.ClusterService_Join_FullMethodName:                 {RoleAdmin, RoleNode},
	trustfedv1.ClusterService_Leave_FullMethodName:                {RoleAdmin},
	peerv1.PeerService_ReadIndex_FullMethodName:                   {RoleNode},
	peerv1.PeerService_AppendAudit_FullMethodName:                 {RoleNode},
	// Checkpoints and consistency proofs are public: hashes and
	// signatures, what witnesses need. Entries and inclusion proofs (which
	// carry an entry) are for admins (and, with their own roles, regulators
	// and the members they name).
	trustfedv1.AuditService_GetSignedTreeHead_FullMethodName:   {RoleNone, RoleAdmin, RoleNode},
	trustfedv1.AuditService_GetConsistencyProof_FullMethodName: {RoleNone, RoleAdmin, RoleNode},
	trustfedv1.AuditService_ListAuditEntries_FullMethodName:    {RoleAdmin},
	trustfedv1.AuditService_GetInclusionProof_FullMethodName:   {RoleAdmin},
	trustfedv1.AuditService_AddCosignature_FullMethodName:      {RoleAdmin},
}

// publicMethods need no credentials: publishing public keys so anyone can
// verify a decision offline.
var publicMethods = map[string]bool{
	trustfedv1.RegistryService_GetKeys_FullMethodName:          true,
	trustfedv1.AuditService_GetSignedTreeHead_FullMethodName:   true,
	trustfedv1.AuditService_GetConsistencyProof_FullMethodName: true,
}

func authorize(method string, p Principal) error {
	for _, r := range methodRoles[method] {
		if r == p.Role {
			return nil
		}
	}
	return fmt.Errorf("%w: role %s may not call %s", ErrPermissionDenied, p.Role, method)
}

// authenticator identifies the caller of a request: a bearer token in the
// "authorization" metadata, or else a node certificate from the cluster CA.
// A token wins over a certificate, so a request a follower forwards for a
// user is authorised as that user, not as the follower.
type authenticator struct {
	store *state.Store
}

func (a authenticator) authenticate(ctx context.Context) (Principal, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		return a.fromToken(vals[0])
	}
	if id, ok := nodeIdentity(ctx); ok {
		// A peer forwarding a node's own request (Join) names that node;
		// peers are mutually authenticated servers of the same cluster.
		if fwd := md.Get(forwardedForHeader); len(fwd) == 1 && strings.HasPrefix(fwd[0], "node:") {
			return Principal{ID: fwd[0], Role: RoleNode}, nil
		}
		return Principal{ID: "node:" + id, Role: RoleNode}, nil
	}
	return Principal{}, fmt.Errorf("%w: send \"Authorization: Bearer <token>\"", ErrUnauthenticated)
}

func (a authenticator) fromToken(header string) (Principal, error) {
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || secret == "" {
		return Principal{}, fmt.Errorf("%w: authorization header must be \"Bearer <token>\"", ErrUnauthenticated)
	}
	if _, err := attestation.ParseToken(secret); err != nil {
		return Principal{}, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	hash := attestation.TokenHash(secret)
	tok, ok := a.store.Read().TokenByHash(hash[:])
	if !ok {
		return Principal{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	switch tok.Role {
	case commandv1.Role_ROLE_ADMIN:
		return Principal{ID: "token:" + tok.Id, Role: RoleAdmin}, nil
	default:
		return Principal{}, fmt.Errorf("%w: token has no usable role", ErrUnauthenticated)
	}
}

// nodeIdentity returns the node id of a verified client certificate.
func nodeIdentity(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	return attestation.NodeIDFromCert(info.State.VerifiedChains[0][0])
}
