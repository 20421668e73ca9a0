package system_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	_ "github.com/trustfed/trustfed/proto/trustfed/peer/v1" // the peer service's descriptors
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"
)

// matrixRow is one method's line of docs/security.md's authorisation table.
type matrixRow struct {
	method string
	cells  map[string]string // column -> "✓", "own", "✓ / own", "—"
}

var matrixColumns = []string{"public", "admin", "governance", "regulator", "member", "node", "monitor"}

// readMatrix parses the authorisation table of docs/security.md (generated
// from the registry's policy and checked against it by TestSecurityDoc).
func readMatrix(t *testing.T) []matrixRow {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "docs", "security.md"))
	require.NoError(t, err)
	defer f.Close()
	var rows []matrixRow
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "| `trustfed.") {
			continue
		}
		cols := strings.Split(strings.Trim(line, "|"), "|")
		require.Len(t, cols, len(matrixColumns)+2, line)
		row := matrixRow{method: "/" + strings.Trim(strings.TrimSpace(cols[0]), "`"), cells: map[string]string{}}
		for i, c := range matrixColumns {
			row.cells[c] = strings.TrimSpace(cols[i+1])
		}
		rows = append(rows, row)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, rows)
	return rows
}

// caller is one principal of the matrix.
type caller struct {
	name   string // column of the table
	scoped bool   // an organisation-scoped regulator (the "own" half of "✓ / own")
	conn   *grpc.ClientConn
}

// expected says whether the table allows c to call a method for its own
// organisation (own) or another one.
func expected(cell string, c caller, own bool) bool {
	switch cell {
	case "✓":
		return true
	case "own":
		return own
	case "✓ / own":
		return own || !c.scoped
	default:
		return false
	}
}

// matrixFixtures are the objects the requests name: acme is the callers'
// own organisation; globex and initech are others.
type matrixFixtures struct {
	ownAgreement, otherAgreement         string
	ownSession, otherSession             string
	ownCascade, otherCascade             string
	ownAuthorization, otherAuthorization string
	ownEntry, otherEntry                 uint64
}

// requestFor builds the request of method for the own or the other case.
// Requests that would change state if allowed are left invalid, so an
// allowed call fails validation (InvalidArgument, NotFound…) instead.
func requestFor(t *testing.T, method string, fx matrixFixtures, own bool) proto.Message {
	t.Helper()
	org := "globex"
	if own {
		org = "acme"
	}
	pick := func(a, b string) string {
		if own {
			return a
		}
		return b
	}
	switch method {
	case trustfedv1.RegistryService_CheckInteraction_FullMethodName:
		return &trustfedv1.CheckInteractionRequest{FromOrganizationId: org, ToOrganizationId: pick("globex", "initech"), Action: "ping"}
	case trustfedv1.RegistryService_CheckInteractions_FullMethodName:
		return &trustfedv1.CheckInteractionsRequest{Checks: []*trustfedv1.CheckInteractionRequest{{FromOrganizationId: org, ToOrganizationId: pick("globex", "initech"), Action: "ping"}}}
	case trustfedv1.RegistryService_GetOrganization_FullMethodName:
		return &trustfedv1.GetOrganizationRequest{OrganizationId: org}
	case trustfedv1.RegistryService_RequestAuthorization_FullMethodName:
		return &trustfedv1.RequestAuthorizationRequest{Check: &trustfedv1.CheckInteractionRequest{FromOrganizationId: org}}
	case trustfedv1.RegistryService_GetAuthorization_FullMethodName:
		return &trustfedv1.GetAuthorizationRequest{AuthorizationId: pick(fx.ownAuthorization, fx.otherAuthorization)}
	case trustfedv1.RegistryService_ReportRefusals_FullMethodName:
		return &trustfedv1.ReportRefusalsRequest{OrganizationId: org} // no refusals: invalid

	case trustfedv1.MembershipService_RegisterOrganization_FullMethodName:
		reg, err := proto.Marshal(&trustfedv1.Registration{OrganizationId: org})
		require.NoError(t, err)
		return &trustfedv1.RegisterOrganizationRequest{Registration: reg}
	case trustfedv1.MembershipService_SubmitPassport_FullMethodName:
		return &trustfedv1.SubmitPassportRequest{OrganizationId: org}
	case trustfedv1.MembershipService_ProposeAgreement_FullMethodName:
		return &trustfedv1.ProposeAgreementRequest{OrganizationAId: pick("globex", "initech"), OrganizationBId: org}
	case trustfedv1.MembershipService_SignAgreement_FullMethodName:
		return &trustfedv1.SignAgreementRequest{AgreementId: pick(fx.ownAgreement, fx.otherAgreement), OrganizationId: org}
	case trustfedv1.MembershipService_TerminateAgreement_FullMethodName:
		term, err := proto.Marshal(&trustfedv1.AgreementTermination{OrganizationId: org})
		require.NoError(t, err)
		return &trustfedv1.TerminateAgreementRequest{Termination: term}
	case trustfedv1.MembershipService_ApproveAuthorization_FullMethodName:
		return &trustfedv1.ApproveAuthorizationRequest{AuthorizationId: pick(fx.ownAuthorization, fx.otherAuthorization), OrganizationId: org}
	case trustfedv1.MembershipService_SetWebhook_FullMethodName:
		return &trustfedv1.SetWebhookRequest{Settings: &trustfedv1.WebhookSettings{OrganizationId: org}}
	case trustfedv1.AdminService_GetAgreement_FullMethodName:
		return &trustfedv1.GetAgreementRequest{AgreementId: pick(fx.ownAgreement, fx.otherAgreement)}
	case trustfedv1.AdminService_ListAgreements_FullMethodName:
		return &trustfedv1.ListAgreementsRequest{OrganizationId: org}
	case trustfedv1.CascadeService_OpenSession_FullMethodName:
		return &trustfedv1.OpenSessionRequest{FromOrganizationId: org}
	case trustfedv1.CascadeService_HeartbeatSession_FullMethodName:
		return &trustfedv1.HeartbeatSessionRequest{OrganizationId: org}
	case trustfedv1.CascadeService_CloseSession_FullMethodName:
		return &trustfedv1.CloseSessionRequest{OrganizationId: org}
	case trustfedv1.CascadeService_GetSession_FullMethodName:
		return &trustfedv1.GetSessionRequest{SessionId: pick(fx.ownSession, fx.otherSession)}
	case trustfedv1.CascadeService_GetOrganizationGraph_FullMethodName:
		return &trustfedv1.GetOrganizationGraphRequest{OrganizationId: org}
	case trustfedv1.CascadeService_WatchEvents_FullMethodName:
		return &trustfedv1.WatchEventsRequest{OrganizationId: org}
	case trustfedv1.CascadeService_AckEvent_FullMethodName:
		return &trustfedv1.AckEventRequest{OrganizationId: org}
	case trustfedv1.CascadeService_GetCascade_FullMethodName:
		return &trustfedv1.GetCascadeRequest{CascadeId: pick(fx.ownCascade, fx.otherCascade)}
	case trustfedv1.CascadeService_ListCascades_FullMethodName:
		return &trustfedv1.ListCascadesRequest{OrganizationId: org}
	case trustfedv1.AuditService_ListAuditEntries_FullMethodName:
		return &trustfedv1.ListAuditEntriesRequest{OrganizationId: org, PageSize: 1}
	case trustfedv1.AuditService_GetInclusionProof_FullMethodName:
		seq := fx.otherEntry
		if own {
			seq = fx.ownEntry
		}
		return &trustfedv1.GetInclusionProofRequest{Sequence: seq}
	case trustfedv1.AuditService_AddCosignature_FullMethodName:
		return &trustfedv1.AddCosignatureRequest{OrganizationId: org}
	case trustfedv1.AccessService_EnrolMemberNode_FullMethodName:
		return &trustfedv1.EnrolMemberNodeRequest{Enrolment: &trustfedv1.MemberNodeEnrolment{OrganizationId: org}}
	case trustfedv1.AccessService_ListMemberNodes_FullMethodName:
		return &trustfedv1.ListMemberNodesRequest{OrganizationId: org}
	case trustfedv1.AccessService_RemoveMemberNode_FullMethodName:
		return &trustfedv1.RemoveMemberNodeRequest{OrganizationId: org}
	case trustfedv1.AccessService_GetMemberChallenge_FullMethodName:
		return &trustfedv1.GetMemberChallengeRequest{OrganizationId: org}
	}
	// Every other method names no organisation: an empty request (which
	// the handler refuses as invalid if the caller may call it at all).
	md, err := methodDesc(method)
	require.NoError(t, err)
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	require.NoError(t, err)
	return mt.New().Interface()
}

func methodDesc(method string) (protoreflect.MethodDescriptor, error) {
	i := strings.LastIndex(method, "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(method[1:i]))
	if err != nil {
		return nil, err
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("%s is not a service", method[1:i])
	}
	md := sd.Methods().ByName(protoreflect.Name(method[i+1:]))
	if md == nil {
		return nil, fmt.Errorf("no method %s", method)
	}
	return md, nil
}

// invoke calls method with req as c and returns the status code. A server
// stream counts as allowed once it delivers its first message.
func invoke(t *testing.T, c caller, method string, req proto.Message) codes.Code {
	t.Helper()
	md, err := methodDesc(method)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	require.NoError(t, err)
	resp := mt.New().Interface()
	if md.IsStreamingServer() {
		st, err := c.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
		if err != nil {
			return status.Code(err)
		}
		if err := st.SendMsg(req); err != nil {
			return status.Code(err)
		}
		require.NoError(t, st.CloseSend())
		return status.Code(st.RecvMsg(resp))
	}
	return status.Code(c.conn.Invoke(ctx, method, req, resp))
}

func denied(code codes.Code) bool {
	return code == codes.PermissionDenied || code == codes.Unauthenticated
}

// The authorisation matrix: every method of docs/security.md's table, as
// every role, for the caller's own organisation and for another one,
// against a running server. The outcome (refused with PermissionDenied or
// Unauthenticated, or let through to the handler) must be what the table
// says, with no exception.
func TestAuthorizationMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	rows := readMatrix(t)
	d, admin, fed := startFederation(t)
	dual := func(r *trustfedv1.Registration) {
		r.ControlProfile.ActionAuthorization = &trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 1000}
	}
	for _, org := range []string{"acme", "globex", "initech", "hooli", "umbrella"} {
		enrol(t, admin, fed, org, 3, dual)
	}
	var fx matrixFixtures
	fx.ownAgreement = agree(t, admin, fed, "acme", "globex", "ping", "task_send").Id
	fx.otherAgreement = agree(t, admin, fed, "globex", "initech", "ping", "task_send").Id
	agree(t, admin, fed, "hooli", "acme", "ping")
	agree(t, admin, fed, "umbrella", "globex", "ping")

	members := map[string]*client.Client{}
	for _, org := range []string{"acme", "globex"} {
		members[org] = memberClient(t, d, admin, fed, org)
	}
	// Sessions and dual-authorisation requests, opened by their members.
	open := func(m *client.Client, from, to string) string {
		s, err := m.Cascades().OpenSession(ctxT(t), &trustfedv1.OpenSessionRequest{FromOrganizationId: from, ToOrganizationId: to, Action: "ping"})
		require.NoError(t, err)
		return s.Session.Id
	}
	fx.ownSession = open(members["acme"], "acme", "globex")
	fx.otherSession = open(members["globex"], "globex", "initech")
	authorize := func(m *client.Client, from, to string) string {
		a, err := m.Registry().RequestAuthorization(ctxT(t), &trustfedv1.RequestAuthorizationRequest{Check: &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: to, Action: "task_send", Value: 5000}})
		require.NoError(t, err)
		return a.Authorization.Id
	}
	fx.ownAuthorization = authorize(members["acme"], "acme", "globex")
	fx.otherAuthorization = authorize(members["globex"], "globex", "initech")
	// Cascades: hooli's suspension concerns acme (its partner), umbrella's
	// does not.
	d.admins.apply(t, testutil.SetStatus("hooli", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), admin)
	d.admins.apply(t, testutil.SetStatus("umbrella", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), admin)
	fx.ownCascade = cascadeOf(t, admin, "hooli").Id
	fx.otherCascade = cascadeOf(t, admin, "umbrella").Id
	// Audit entries: one naming acme, one naming only others.
	entry := func(org string, keep func(*trustfedv1.AuditEntry) bool) uint64 {
		resp, err := admin.Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{OrganizationId: org, PageSize: 1000})
		require.NoError(t, err)
		for _, r := range resp.Records {
			if keep(r.Entry) {
				return r.Sequence
			}
		}
		t.Fatalf("no audit entry of %s", org)
		return 0
	}
	fx.ownEntry = entry("acme", func(*trustfedv1.AuditEntry) bool { return true })
	fx.otherEntry = entry("initech", func(e *trustfedv1.AuditEntry) bool { return !slices.Contains(e.OrganizationIds, "acme") })
	waitHead(t, admin, max(fx.ownEntry, fx.otherEntry)+1)

	// The callers.
	tokenFor := func(role trustfedv1.TokenRole, org string) string {
		resp, err := trustfedv1.NewAccessServiceClient(admin.Conn()).CreateToken(ctxT(t), &trustfedv1.CreateTokenRequest{Role: role, OrganizationId: org, Description: "matrix " + role.String(), Ttl: durationpb.New(time.Hour)})
		require.NoError(t, err)
		return resp.Secret
	}
	callers := []caller{
		{name: "public", conn: dial(t, d.srv, d.caFile, "").Conn()},
		{name: "admin", conn: admin.Conn()},
		{name: "governance", conn: dial(t, d.srv, d.caFile, tokenFor(trustfedv1.TokenRole_TOKEN_ROLE_GOVERNANCE, "acme")).Conn()},
		{name: "regulator", conn: dial(t, d.srv, d.caFile, tokenFor(trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, "")).Conn()},
		{name: "regulator", scoped: true, conn: dial(t, d.srv, d.caFile, tokenFor(trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, "acme")).Conn()},
		{name: "member", conn: members["acme"].Conn()},
		{name: "node", conn: nodeConn(t, d)},
		{name: "monitor", conn: dial(t, d.srv, d.caFile, tokenFor(trustfedv1.TokenRole_TOKEN_ROLE_MONITOR, "")).Conn()},
	}

	mismatches, calls := 0, 0
	for _, row := range rows {
		for _, c := range callers {
			for _, own := range []bool{true, false} {
				want := expected(row.cells[c.name], c, own)
				code := invoke(t, c, row.method, requestFor(t, row.method, fx, own))
				calls++
				if denied(code) == want {
					mismatches++
					t.Errorf("%s as %s (scoped regulator %v), own organisation %v: got %s, the table says allowed=%v", row.method, c.name, c.scoped, own, code, want)
				}
			}
		}
	}
	t.Logf("%d methods × %d callers × own/other = %d calls, %d mismatches", len(rows), len(callers), calls, mismatches)
	require.Zero(t, mismatches)

	// Organisation-scoped callers listing organisations see their own only.
	for _, c := range callers {
		if c.name != "governance" && c.name != "member" && !c.scoped {
			continue
		}
		resp, err := trustfedv1.NewRegistryServiceClient(c.conn).ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{})
		require.NoError(t, err, c.name)
		require.Len(t, resp.Organizations, 1, c.name)
		require.Equal(t, "acme", resp.Organizations[0].Id, c.name)
	}
}

// waitHead waits until a signed tree head covers size entries (inclusion
// proofs are against the newest checkpoint).
func waitHead(t *testing.T, c *client.Client, size uint64) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, "a checkpoint covers the fixtures", func() error {
		sth, err := c.Audit().GetSignedTreeHead(ctxT(t), &trustfedv1.GetSignedTreeHeadRequest{})
		if err != nil {
			return err
		}
		if sth.TreeSize < size {
			return fmt.Errorf("checkpoint of %d entries < %d", sth.TreeSize, size)
		}
		return nil
	})
}

// nodeConn connects with the dev server's own node certificate, as another
// registry server would.
func nodeConn(t *testing.T, d *devServer) *grpc.ClientConn {
	t.Helper()
	dir := filepath.Join(d.srv.DataDir, "tls")
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, attestation.DevCertFileName), filepath.Join(dir, attestation.DevKeyFileName))
	require.NoError(t, err)
	conn, err := grpc.NewClient(d.srv.Addrs.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: caPool(t, d.caFile), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// memberClient enrols a member node of org and dials the dev server as it
// (mutual TLS with its certificate, no token).
func memberClient(t *testing.T, d *devServer, admin *client.Client, fed *testutil.Federation, org string) *client.Client {
	t.Helper()
	c, _ := testutil.MemberClient(t, admin, client.Config{Addr: d.srv.Addrs.GRPCAddr, CACertFile: d.caFile, Timeout: 20 * time.Second}, fed, org)
	return c
}
