package registry

import (
	"context"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Role is what a principal may do.
type Role int

// Roles. docs/security.md has what each may call.
const (
	// RoleNone is an unauthenticated caller: public methods only.
	RoleNone Role = iota
	// RoleAdmin is a federation authority admin (bearer token).
	RoleAdmin
	// RoleNode is another registry server (certificate from the cluster CA).
	RoleNode
	// RoleGovernance is an organisation's governance authority (bearer
	// token scoped to its organisation).
	RoleGovernance
	// RoleRegulator reads the audit trail and the registry, changes
	// nothing (bearer token; federation-wide or scoped to one organisation).
	RoleRegulator
	// RoleMember is a member node of an organisation (client certificate
	// from the federation CA naming organisation and node).
	RoleMember
	// RoleMonitor is a monitoring system (bearer token): it reads GET
	// /metrics and calls public methods only.
	RoleMonitor
)

// Roles lists every role, for tables and tests.
var Roles = []Role{RoleNone, RoleAdmin, RoleNode, RoleGovernance, RoleRegulator, RoleMember, RoleMonitor}

func (r Role) String() string {
	switch r {
	case RoleAdmin:
		return "admin"
	case RoleNode:
		return "node"
	case RoleGovernance:
		return "governance"
	case RoleRegulator:
		return "regulator"
	case RoleMember:
		return "member"
	case RoleMonitor:
		return "monitor"
	default:
		return "none"
	}
}

// Principal is the authenticated caller of a request.
type Principal struct {
	// ID names the caller in the audit trail: "token:<id>", "node:<id>",
	// "member:<org>/<node>" or "anonymous".
	ID   string
	Role Role
	// Organization is the one organisation the principal acts for or may
	// read; "" for federation admins, registry nodes and federation-wide
	// regulators. Every organisation-scoped principal is confined to it.
	Organization string
	// MemberNode is the member node's id (RoleMember).
	MemberNode string
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

// rule is the authorisation of one method.
type rule struct {
	// roles may call the method; RoleNone makes it public (no credentials).
	roles []Role
	// orgFields are the request fields (dot paths) naming the organisations
	// a call acts for. An organisation-scoped principal must name its own
	// organisation in one of them; with a single field left empty, the
	// principal's organisation is filled in (a member never says who it is:
	// its certificate does).
	orgFields []string
	// items, if set, is a repeated message field of the request (a batch):
	// orgFields are then paths inside each of its items, and every item
	// must name the principal's organisation (an empty single field is
	// filled in, item by item).
	items string
	// orgOf reads the organisation from signed bytes the request carries.
	orgOf func(req proto.Message) (field, org string)
	// inHandler: the request names its object by id; the handler checks
	// that an organisation-scoped principal may see it (scopeCheck).
	inHandler bool
	// listsOwn: a list whose handler shows an organisation-scoped principal
	// its own organisation only.
	listsOwn bool
}

// orgScoped reports whether the method acts for or reads some
// organisation's data (so organisation-scoped principals are confined);
// the others serve federation-wide data (policy, issuers, admins).
func (r rule) orgScoped() bool {
	return len(r.orgFields) > 0 || r.orgOf != nil || r.inHandler
}

// Role groups of the table below.
var (
	public     = []Role{RoleNone}
	adminOnly  = []Role{RoleAdmin}
	nodeOnly   = []Role{RoleNode}
	memberOnly = []Role{RoleMember}
	governance = []Role{RoleAdmin, RoleGovernance}
	readers    = []Role{RoleAdmin, RoleGovernance, RoleRegulator, RoleMember}
	auditors   = []Role{RoleAdmin, RoleRegulator}
	// parties: an organisation's people and nodes, and admins.
	parties     = []Role{RoleAdmin, RoleGovernance, RoleMember}
	clusterRead = []Role{RoleAdmin, RoleNode}
)

// policy is the authorisation table: every method of every registered
// service. A method missing here is denied to everyone (default deny); a
// test walks the registered services and fails on a missing entry, and
// docs/security.md is generated from this table (TestSecurityDoc).
var accessPolicy = map[string]rule{
	trustfedv1.RegistryService_CheckInteraction_FullMethodName:     {roles: memberOnly, orgFields: []string{"from_organization_id"}},
	trustfedv1.RegistryService_CheckInteractions_FullMethodName:    {roles: memberOnly, items: "checks", orgFields: []string{"from_organization_id"}},
	trustfedv1.RegistryService_GetOrganization_FullMethodName:      {roles: readers, orgFields: []string{"organization_id"}},
	trustfedv1.RegistryService_ListOrganizations_FullMethodName:    {roles: readers, listsOwn: true},
	trustfedv1.RegistryService_GetKeys_FullMethodName:              {roles: public},
	trustfedv1.RegistryService_RequestAuthorization_FullMethodName: {roles: memberOnly, orgFields: []string{"check.from_organization_id"}},
	trustfedv1.RegistryService_GetAuthorization_FullMethodName:     {roles: parties, inHandler: true},
	trustfedv1.RegistryService_ReportRefusals_FullMethodName:       {roles: memberOnly, orgFields: []string{"organization_id"}},

	trustfedv1.MembershipService_RegisterOrganization_FullMethodName: {roles: governance, orgOf: registrationOrg},
	trustfedv1.MembershipService_SubmitPassport_FullMethodName:       {roles: governance, orgFields: []string{"organization_id"}},
	trustfedv1.MembershipService_ProposeAgreement_FullMethodName:     {roles: governance, orgFields: []string{"organization_a_id", "organization_b_id"}},
	trustfedv1.MembershipService_SignAgreement_FullMethodName:        {roles: governance, orgFields: []string{"organization_id"}},
	trustfedv1.MembershipService_TerminateAgreement_FullMethodName:   {roles: governance, orgOf: terminationOrg},
	trustfedv1.MembershipService_ApproveAuthorization_FullMethodName: {roles: parties, orgFields: []string{"organization_id"}},
	trustfedv1.MembershipService_SetWebhook_FullMethodName:           {roles: governance, orgFields: []string{"settings.organization_id"}},

	trustfedv1.AdminService_ApproveOrganization_FullMethodName: {roles: adminOnly},
	trustfedv1.AdminService_UpdateOrganization_FullMethodName:  {roles: adminOnly},
	trustfedv1.AdminService_ProposeAdminChange_FullMethodName:  {roles: adminOnly},
	trustfedv1.AdminService_ApproveAdminChange_FullMethodName:  {roles: adminOnly},
	trustfedv1.AdminService_GetAdminChange_FullMethodName:      {roles: auditors},
	trustfedv1.AdminService_ListAdminChanges_FullMethodName:    {roles: auditors},
	trustfedv1.AdminService_ListAdmins_FullMethodName:          {roles: auditors},
	trustfedv1.AdminService_GetIssuer_FullMethodName:           {roles: readers},
	trustfedv1.AdminService_ListIssuers_FullMethodName:         {roles: readers},
	trustfedv1.AdminService_GetFederationPolicy_FullMethodName: {roles: readers},
	trustfedv1.AdminService_GetAgreement_FullMethodName:        {roles: readers, inHandler: true},
	trustfedv1.AdminService_ListAgreements_FullMethodName:      {roles: readers, orgFields: []string{"organization_id"}},
	trustfedv1.AdminService_ImportAgreements_FullMethodName:    {roles: adminOnly},

	trustfedv1.CascadeService_OpenSession_FullMethodName:          {roles: memberOnly, orgFields: []string{"from_organization_id"}},
	trustfedv1.CascadeService_HeartbeatSession_FullMethodName:     {roles: memberOnly, orgFields: []string{"organization_id"}},
	trustfedv1.CascadeService_CloseSession_FullMethodName:         {roles: memberOnly, orgFields: []string{"organization_id"}},
	trustfedv1.CascadeService_GetSession_FullMethodName:           {roles: parties, inHandler: true},
	trustfedv1.CascadeService_GetOrganizationGraph_FullMethodName: {roles: readers, orgFields: []string{"organization_id"}},
	trustfedv1.CascadeService_WatchEvents_FullMethodName:          {roles: []Role{RoleAdmin, RoleMember}, orgFields: []string{"organization_id"}},
	trustfedv1.CascadeService_AckEvent_FullMethodName:             {roles: memberOnly, orgFields: []string{"organization_id"}},
	trustfedv1.CascadeService_GetCascade_FullMethodName:           {roles: readers, inHandler: true},
	trustfedv1.CascadeService_ListCascades_FullMethodName:         {roles: readers, orgFields: []string{"organization_id"}},

	trustfedv1.ClusterService_Status_FullMethodName:             {roles: clusterRead},
	trustfedv1.ClusterService_Join_FullMethodName:               {roles: clusterRead},
	trustfedv1.ClusterService_Leave_FullMethodName:              {roles: adminOnly},
	trustfedv1.ClusterService_SaveSnapshot_FullMethodName:       {roles: adminOnly},
	trustfedv1.ClusterService_TransferLeadership_FullMethodName: {roles: adminOnly},
	peerv1.PeerService_ReadIndex_FullMethodName:                 {roles: nodeOnly},
	peerv1.PeerService_AppendAudit_FullMethodName:               {roles: nodeOnly},
	peerv1.PeerService_AppendAuditStream_FullMethodName:         {roles: nodeOnly},
	peerv1.PeerService_Progress_FullMethodName:                  {roles: nodeOnly},
	peerv1.PeerService_ReportDivergence_FullMethodName:          {roles: nodeOnly},
	peerv1.PeerService_GetCommitment_FullMethodName:             {roles: nodeOnly},
	peerv1.PeerService_CosignCheckpoint_FullMethodName:          {roles: nodeOnly},
	peerv1.PeerService_GetCertifiedCheckpoint_FullMethodName:    {roles: nodeOnly},
	peerv1.PeerService_CosignBatch_FullMethodName:               {roles: nodeOnly},

	// Checkpoints and consistency proofs are hashes and signatures: public,
	// what witnesses need. Entries and inclusion proofs are read by role;
	// an organisation-scoped caller lists only the entries that name its
	// organisation (organization_id, filled in when empty), and proves only
	// such an entry (the handler reads it).
	trustfedv1.AuditService_GetSignedTreeHead_FullMethodName:   {roles: public},
	trustfedv1.AuditService_GetConsistencyProof_FullMethodName: {roles: public},
	trustfedv1.AuditService_ListAuditEntries_FullMethodName:    {roles: readers, orgFields: []string{"organization_id"}},
	trustfedv1.AuditService_GetInclusionProof_FullMethodName:   {roles: readers, inHandler: true},
	trustfedv1.AuditService_AddCosignature_FullMethodName:      {roles: parties, orgFields: []string{"organization_id"}},

	trustfedv1.AccessService_CreateToken_FullMethodName:            {roles: adminOnly},
	trustfedv1.AccessService_ListTokens_FullMethodName:             {roles: adminOnly},
	trustfedv1.AccessService_RevokeToken_FullMethodName:            {roles: adminOnly},
	trustfedv1.AccessService_EnrolMemberNode_FullMethodName:        {roles: governance, orgFields: []string{"enrolment.organization_id"}},
	trustfedv1.AccessService_ListMemberNodes_FullMethodName:        {roles: governance, orgFields: []string{"organization_id"}},
	trustfedv1.AccessService_RemoveMemberNode_FullMethodName:       {roles: governance, orgFields: []string{"organization_id"}},
	trustfedv1.AccessService_GetMemberChallenge_FullMethodName:     {roles: public},
	trustfedv1.AccessService_IssueMemberCertificate_FullMethodName: {roles: public},
}

// isPublic reports whether method needs no credentials.
func isPublic(method string) bool {
	return slices.Contains(accessPolicy[method].roles, RoleNone)
}

// authorize checks that p may call method at all (the role part of the
// table; streams check their request in the handler with authorizeRequest).
func authorize(method string, p Principal) error {
	r, ok := accessPolicy[method]
	if !ok || !slices.Contains(r.roles, p.Role) {
		return fmt.Errorf("%w: role %s may not call %s", ErrPermissionDenied, p.Role, method)
	}
	return nil
}

// authorizeRequest checks (and completes) the organisation fields of req
// for an organisation-scoped principal: it must act for its own
// organisation only.
func authorizeRequest(method string, p Principal, req any) error {
	if p.Organization == "" {
		return nil
	}
	r := accessPolicy[method]
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	if r.orgOf != nil {
		field, org := r.orgOf(m)
		if org != p.Organization {
			return state.PermissionDenied(field, "%s acts only for organization %q, not %q", p.ID, p.Organization, org)
		}
		return nil
	}
	if len(r.orgFields) == 0 {
		return nil
	}
	if r.items != "" {
		return authorizeItems(r, p, m)
	}
	return authorizeFields(r, p, m, "")
}

// authorizeItems applies the organisation fields of r to every item of the
// batch field r.items; nothing is filled in unless every item is allowed.
func authorizeItems(r rule, p Principal, m proto.Message) error {
	list, ok := itemList(m, r.items)
	if !ok {
		return fmt.Errorf("authorisation table: %s has no repeated message field %s", m.ProtoReflect().Descriptor().FullName(), r.items)
	}
	for i := 0; i < list.Len(); i++ {
		item := proto.Clone(list.Get(i).Message().Interface())
		if err := authorizeFields(r, p, item, fmt.Sprintf("%s[%d].", r.items, i)); err != nil {
			return err
		}
	}
	for i := 0; i < list.Len(); i++ {
		if err := authorizeFields(r, p, list.Get(i).Message().Interface(), ""); err != nil {
			return err
		}
	}
	return nil
}

// itemList is the repeated message field name of m.
func itemList(m proto.Message, name string) (protoreflect.List, bool) {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || !fd.IsList() || fd.Kind() != protoreflect.MessageKind {
		return nil, false
	}
	return m.ProtoReflect().Get(fd).List(), true
}

// authorizeFields checks (and completes) r.orgFields of m for p; prefix
// goes before the field names in errors (the item of a batch).
func authorizeFields(r rule, p Principal, m proto.Message, prefix string) error {
	method := string(m.ProtoReflect().Descriptor().FullName())
	var named []string
	for _, path := range r.orgFields {
		v, ok := stringField(m.ProtoReflect(), path, "")
		if !ok {
			return fmt.Errorf("authorisation table: %s has no string field %s", method, path)
		}
		if v == p.Organization {
			return nil
		}
		if v != "" {
			named = append(named, v)
		}
	}
	if len(named) == 0 && len(r.orgFields) == 1 {
		stringField(m.ProtoReflect(), r.orgFields[0], p.Organization)
		return nil
	}
	return state.PermissionDenied(prefix+strings.Join(r.orgFields, " or "+prefix), "%s acts only for organization %q", p.ID, p.Organization)
}

// requestedOrgs is every organisation a request of method names in the
// fields authorizeRequest checks (to audit a refused call under them too).
func requestedOrgs(method string, req any) []string {
	r := accessPolicy[method]
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	var out []string
	if r.orgOf != nil {
		if _, org := r.orgOf(m); org != "" {
			out = append(out, org)
		}
	}
	msgs := []proto.Message{m}
	if r.items != "" {
		msgs = nil
		if list, ok := itemList(m, r.items); ok {
			for i := 0; i < list.Len(); i++ {
				msgs = append(msgs, list.Get(i).Message().Interface())
			}
		}
	}
	for _, m := range msgs {
		for _, path := range r.orgFields {
			if v, ok := stringField(m.ProtoReflect(), path, ""); ok && v != "" && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// stringField reads the string field at a dot path of m; with set != "" it
// writes set there (creating messages on the way).
func stringField(m protoreflect.Message, path, set string) (string, bool) {
	names := strings.Split(path, ".")
	for i, name := range names {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd == nil {
			return "", false
		}
		if i == len(names)-1 {
			if fd.Kind() != protoreflect.StringKind || fd.IsList() {
				return "", false
			}
			if set != "" {
				m.Set(fd, protoreflect.ValueOfString(set))
			}
			return m.Get(fd).String(), true
		}
		if fd.Kind() != protoreflect.MessageKind || fd.IsList() || fd.IsMap() {
			return "", false
		}
		if set != "" {
			m = m.Mutable(fd).Message()
		} else {
			m = m.Get(fd).Message()
		}
	}
	return "", false
}

// scopeCheck is the handler half of the table (inHandler methods): an
// organisation-scoped caller may see an object only if one of orgs is its
// organisation.
func scopeCheck(ctx context.Context, field string, orgs ...string) error {
	p, _ := PrincipalFrom(ctx)
	if p.Organization == "" || slices.Contains(orgs, p.Organization) {
		return nil
	}
	return state.PermissionDenied(field, "%s reads only what concerns organization %q", p.ID, p.Organization)
}

// principalOrg is the organisation an organisation-scoped caller is
// confined to ("" for the others).
func principalOrg(ctx context.Context) string {
	p, _ := PrincipalFrom(ctx)
	return p.Organization
}

// registrationOrg is the organisation a RegisterOrganization request
// registers (inside its signed bytes).
func registrationOrg(m proto.Message) (string, string) {
	var reg trustfedv1.Registration
	if req, ok := m.(*trustfedv1.RegisterOrganizationRequest); ok {
		_ = proto.Unmarshal(req.Registration, &reg)
	}
	return "registration.organization_id", reg.OrganizationId
}

// terminationOrg is the party that signed a TerminateAgreement request.
func terminationOrg(m proto.Message) (string, string) {
	var t trustfedv1.AgreementTermination
	if req, ok := m.(*trustfedv1.TerminateAgreementRequest); ok {
		_ = proto.Unmarshal(req.Termination, &t)
	}
	return "termination.organization_id", t.OrganizationId
}

// authenticator identifies the caller of a request: a bearer token in the
// "authorization" metadata, or else a client certificate from the
// federation CA — a registry server's or a member node's. A token wins over
// a certificate, so a request a follower forwards for a person is
// authorised as that person, not as the follower.
type authenticator struct {
	store *state.Store
	clock func() time.Time
}

func (a authenticator) authenticate(ctx context.Context) (Principal, error) {
	// One key at a time: FromIncomingContext would copy the whole
	// metadata on every call.
	if vals := metadata.ValueFromIncomingContext(ctx, "authorization"); len(vals) > 0 {
		return a.fromToken(vals[0])
	}
	cert, ok := verifiedCert(ctx)
	if !ok {
		return Principal{}, fmt.Errorf("%w: send \"Authorization: Bearer <token>\" or a client certificate", ErrUnauthenticated)
	}
	if id, ok := attestation.NodeIDFromCert(cert); ok {
		// A peer forwarding a request names who made it; peers are
		// mutually authenticated servers of the same cluster, and the
		// leader checks a forwarded member against its own state again.
		if fwd := metadata.ValueFromIncomingContext(ctx, forwardedForHeader); len(fwd) == 1 {
			return a.fromForwarded(fwd[0])
		}
		return Principal{ID: "node:" + id, Role: RoleNode}, nil
	}
	return a.fromMemberCert(a.store.Read(), cert)
}

func (a authenticator) fromForwarded(id string) (Principal, error) {
	switch {
	case strings.HasPrefix(id, "node:"):
		return Principal{ID: id, Role: RoleNode}, nil
	case strings.HasPrefix(id, "member:"):
		org, node, ok := strings.Cut(strings.TrimPrefix(id, "member:"), "/")
		if !ok {
			return Principal{}, fmt.Errorf("%w: malformed forwarded principal %q", ErrUnauthenticated, id)
		}
		return a.fromMember(a.store.Read(), org, node, nil)
	default:
		return Principal{}, fmt.Errorf("%w: unknown forwarded principal %q", ErrUnauthenticated, id)
	}
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
	id := "token:" + tok.Id
	if err := state.TokenUsable(tok, a.clock()); err != nil {
		return Principal{ID: id}, fmt.Errorf("%w: token %s: %w", ErrUnauthenticated, tok.Id, err)
	}
	switch tok.Role {
	case commandv1.Role_ROLE_ADMIN:
		return Principal{ID: id, Role: RoleAdmin}, nil
	case commandv1.Role_ROLE_GOVERNANCE:
		if tok.OrganizationId == "" {
			return Principal{ID: id}, fmt.Errorf("%w: governance token %s names no organization", ErrUnauthenticated, tok.Id)
		}
		return Principal{ID: id, Role: RoleGovernance, Organization: tok.OrganizationId}, nil
	case commandv1.Role_ROLE_REGULATOR:
		return Principal{ID: id, Role: RoleRegulator, Organization: tok.OrganizationId}, nil
	case commandv1.Role_ROLE_MONITOR:
		return Principal{ID: id, Role: RoleMonitor}, nil
	default:
		return Principal{ID: id}, fmt.Errorf("%w: token has no usable role", ErrUnauthenticated)
	}
}

// verifiedCert returns the client certificate the TLS handshake verified
// against the federation CA.
func verifiedCert(ctx context.Context) (*x509.Certificate, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, false
	}
	return info.State.VerifiedChains[0][0], true
}
