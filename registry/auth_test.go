package registry

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite docs/security.md's authorisation table from the policy")

func requireDenied(t *testing.T, err error, field string) {
	t.Helper()
	var se *state.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, state.KindPermissionDenied, se.Kind)
	require.Equal(t, field, se.Field)
}

func TestAuthorizeRequestConfinesScopedPrincipals(t *testing.T) {
	member := Principal{ID: "member:acme/gw-1", Role: RoleMember, Organization: "acme", MemberNode: "gw-1"}
	gov := Principal{ID: "token:g", Role: RoleGovernance, Organization: "acme"}
	admin := Principal{ID: "token:a", Role: RoleAdmin}
	regulator := Principal{ID: "token:r", Role: RoleRegulator}

	// A member never says who it is: its certificate does.
	check := &trustfedv1.CheckInteractionRequest{ToOrganizationId: "globex"}
	require.NoError(t, authorizeRequest(trustfedv1.RegistryService_CheckInteraction_FullMethodName, member, check))
	require.Equal(t, "acme", check.FromOrganizationId)
	requireDenied(t, authorizeRequest(trustfedv1.RegistryService_CheckInteraction_FullMethodName, member,
		&trustfedv1.CheckInteractionRequest{FromOrganizationId: "globex", ToOrganizationId: "acme"}), "from_organization_id")

	// Nested fields are filled and checked too.
	ra := &trustfedv1.RequestAuthorizationRequest{}
	require.NoError(t, authorizeRequest(trustfedv1.RegistryService_RequestAuthorization_FullMethodName, member, ra))
	require.Equal(t, "acme", ra.GetCheck().GetFromOrganizationId())

	// Either party of an agreement may propose it; a third may not.
	require.NoError(t, authorizeRequest(trustfedv1.MembershipService_ProposeAgreement_FullMethodName, gov,
		&trustfedv1.ProposeAgreementRequest{OrganizationAId: "globex", OrganizationBId: "acme"}))
	requireDenied(t, authorizeRequest(trustfedv1.MembershipService_ProposeAgreement_FullMethodName, gov,
		&trustfedv1.ProposeAgreementRequest{OrganizationAId: "globex", OrganizationBId: "initech"}), "organization_a_id or organization_b_id")
	requireDenied(t, authorizeRequest(trustfedv1.MembershipService_ProposeAgreement_FullMethodName, gov,
		&trustfedv1.ProposeAgreementRequest{}), "organization_a_id or organization_b_id")

	// The organisation inside signed bytes counts.
	reg, err := proto.Marshal(&trustfedv1.Registration{OrganizationId: "globex"})
	require.NoError(t, err)
	requireDenied(t, authorizeRequest(trustfedv1.MembershipService_RegisterOrganization_FullMethodName, gov,
		&trustfedv1.RegisterOrganizationRequest{Registration: reg}), "registration.organization_id")
	reg, err = proto.Marshal(&trustfedv1.Registration{OrganizationId: "acme"})
	require.NoError(t, err)
	require.NoError(t, authorizeRequest(trustfedv1.MembershipService_RegisterOrganization_FullMethodName, gov,
		&trustfedv1.RegisterOrganizationRequest{Registration: reg}))

	// Unscoped principals act for any organisation.
	for _, p := range []Principal{admin, regulator} {
		req := &trustfedv1.ListCascadesRequest{OrganizationId: "globex"}
		require.NoError(t, authorizeRequest(trustfedv1.CascadeService_ListCascades_FullMethodName, p, req))
		require.Equal(t, "globex", req.OrganizationId)
	}
	// A scoped regulator is confined like a member.
	scoped := Principal{ID: "token:r2", Role: RoleRegulator, Organization: "acme"}
	requireDenied(t, authorizeRequest(trustfedv1.CascadeService_ListCascades_FullMethodName, scoped,
		&trustfedv1.ListCascadesRequest{OrganizationId: "globex"}), "organization_id")

	// The audit listing: the table confines a scoped reader to the entries
	// that name its organisation, asked for or not.
	list := &trustfedv1.ListAuditEntriesRequest{}
	require.NoError(t, authorizeRequest(trustfedv1.AuditService_ListAuditEntries_FullMethodName, scoped, list))
	require.Equal(t, "acme", list.OrganizationId)
	requireDenied(t, authorizeRequest(trustfedv1.AuditService_ListAuditEntries_FullMethodName, member,
		&trustfedv1.ListAuditEntriesRequest{OrganizationId: "globex"}), "organization_id")
	list = &trustfedv1.ListAuditEntriesRequest{}
	require.NoError(t, authorizeRequest(trustfedv1.AuditService_ListAuditEntries_FullMethodName, regulator, list))
	require.Empty(t, list.OrganizationId, "a federation-wide regulator reads every entry")
}

// Every organisation field the table names exists in its request message.
func TestPolicyFieldsExist(t *testing.T) {
	for method, r := range accessPolicy {
		if len(r.orgFields) == 0 {
			continue
		}
		req, err := newRequest(method)
		require.NoError(t, err, method)
		if r.items != "" {
			list, ok := itemList(req, r.items)
			require.True(t, ok, "%s: %s is not a repeated message field", method, r.items)
			req = list.NewElement().Message().Interface()
		}
		for _, f := range r.orgFields {
			_, ok := stringField(req.ProtoReflect(), f, "")
			require.True(t, ok, "%s: %s is not a string field of %s", method, f, req.ProtoReflect().Descriptor().FullName())
		}
		require.False(t, r.inHandler && len(r.orgFields) > 0, "%s: both inHandler and orgFields", method)
	}
}

// docs/security.md's authorisation table is generated from the policy:
// `go test ./registry -run TestSecurityDoc -update` rewrites it.
func TestSecurityDoc(t *testing.T) {
	const path = "../docs/security.md"
	const begin, end = "<!-- authorization-table:begin (generated by TestSecurityDoc) -->\n", "<!-- authorization-table:end -->"
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	i, j := strings.Index(string(doc), begin), strings.Index(string(doc), end)
	require.True(t, i >= 0 && j > i, "docs/security.md lacks the table markers")
	want := string(doc[:i]) + begin + policyTable() + string(doc[j:])
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	require.Equal(t, want, string(doc), "docs/security.md is out of date: go test ./registry -run TestSecurityDoc -update")
}

// tableRoles are the table's columns.
var tableRoles = []Role{RoleNone, RoleAdmin, RoleGovernance, RoleRegulator, RoleMember, RoleNode, RoleMonitor}

func policyTable() string {
	var b strings.Builder
	b.WriteString("| method |")
	for _, r := range tableRoles {
		name := r.String()
		if r == RoleNone {
			name = "public"
		}
		fmt.Fprintf(&b, " %s |", name)
	}
	b.WriteString(" organisation checked in |\n|---|")
	for range tableRoles {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	methods := make([]string, 0, len(accessPolicy))
	for m := range accessPolicy {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	for _, m := range methods {
		r := accessPolicy[m]
		fmt.Fprintf(&b, "| `%s` |", strings.TrimPrefix(m, "/"))
		public := slices.Contains(r.roles, RoleNone)
		for _, role := range tableRoles {
			cell := "—"
			switch {
			case public:
				cell = "✓"
			case !slices.Contains(r.roles, role):
			case !r.orgScoped():
				cell = "✓"
			case role == RoleGovernance || role == RoleMember:
				cell = "own"
			case role == RoleRegulator:
				cell = "✓ / own"
			default:
				cell = "✓"
			}
			fmt.Fprintf(&b, " %s |", cell)
		}
		scope := "—"
		switch {
		case public:
		case r.orgOf != nil:
			field, _ := r.orgOf(nil)
			scope = "`" + field + "` (signed bytes)"
		case len(r.orgFields) > 0 && r.items != "":
			scope = "`" + r.items + "[i]." + strings.Join(r.orgFields, "` or `"+r.items+"[i].") + "` (every item)"
		case len(r.orgFields) > 0:
			scope = "`" + strings.Join(r.orgFields, "` or `") + "`"
		case r.inHandler:
			scope = "handler (the object's organisations)"
		case r.listsOwn:
			scope = "handler (lists the caller's own organisation only)"
		}
		fmt.Fprintf(&b, " %s |\n", scope)
	}
	return b.String()
}

// newRequest makes an empty request message for a full method name.
func newRequest(method string) (proto.Message, error) {
	md, err := methodDescriptor(method)
	if err != nil {
		return nil, err
	}
	return newMessage(md.Input().FullName())
}
