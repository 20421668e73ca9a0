package system_test

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// dualAuth is bank-a (whose controls require dual authorisation above a
// value of 500 000) and bank-b with an agreement for task_send, and bank-a's
// member node on each server (members, in the order checks go round).
type dualAuth struct {
	admin   *client.Client
	fed     *testutil.Federation
	members []*client.Client
	check   *trustfedv1.CheckInteractionRequest
}

// enrolBanks enrols bank-a and bank-b through admin and has them agree.
func enrolBanks(t *testing.T, admin *client.Client, fed *testutil.Federation) {
	t.Helper()
	enrol(t, admin, fed, "bank-a", 4, func(r *trustfedv1.Registration) {
		r.ControlProfile.ActionAuthorization = &trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 500_000}
	})
	enrol(t, admin, fed, "bank-b", 2)
	agree(t, admin, fed, "bank-a", "bank-b", "task_send")
}

func newDualAuth(admin *client.Client, fed *testutil.Federation, members ...*client.Client) *dualAuth {
	return &dualAuth{admin: admin, fed: fed, members: members,
		check: &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "task_send", Value: 600_000}}
}

func (d *dualAuth) member(i int) *client.Client { return d.members[i%len(d.members)] }

// grant opens an authorisation for the check (maxUses 0: the default) and
// has both banks approve it; it returns the check presenting it.
func (d *dualAuth) grant(t *testing.T, maxUses uint32) *trustfedv1.CheckInteractionRequest {
	t.Helper()
	ar, err := d.member(0).Registry().RequestAuthorization(ctxT(t), &trustfedv1.RequestAuthorizationRequest{Check: d.check, MaxUses: maxUses})
	require.NoError(t, err)
	want := max(maxUses, 1)
	require.Equal(t, want, ar.Authorization.ParsedStatement.MaxUses, "the parties approve the number of uses")
	for _, org := range []string{"bank-a", "bank-b"} {
		_, err := d.admin.Membership().ApproveAuthorization(ctxT(t), &trustfedv1.ApproveAuthorizationRequest{
			AuthorizationId: ar.Authorization.Id, OrganizationId: org, Signature: d.fed.SignAuthorization(org, ar.Authorization.Statement)})
		require.NoError(t, err)
	}
	got := d.authorization(t, 1, ar.Authorization.Id)
	require.Equal(t, trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_GRANTED, got.Status)
	require.Equal(t, want, got.UsesRemaining)
	withID := proto.CloneOf(d.check)
	withID.AuthorizationId = ar.Authorization.Id
	return withID
}

func (d *dualAuth) authorization(t *testing.T, member int, id string) *trustfedv1.Authorization {
	t.Helper()
	got, err := d.member(member).Registry().GetAuthorization(ctxT(t), &trustfedv1.GetAuthorizationRequest{AuthorizationId: id})
	require.NoError(t, err)
	return got.Authorization
}

func (d *dualAuth) decide(t *testing.T, member int, req *trustfedv1.CheckInteractionRequest) *trustfedv1.CheckInteractionResponse {
	t.Helper()
	resp, err := d.member(member).Registry().CheckInteraction(ctxT(t), req)
	require.NoError(t, err, "member %d", member)
	return resp
}

// requireUsed: resp is the DENY of a check whose authorisation has no use left.
func requireUsed(t *testing.T, resp *trustfedv1.CheckInteractionResponse, id string) {
	t.Helper()
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision)
	require.Len(t, resp.Reasons, 1)
	require.Contains(t, resp.Reasons[0].Message, "dual authorisation: authorization "+id+" has already been used")
}

// concurrently presents a grant of uses uses in checks concurrent checks,
// spread over the members: exactly uses of them are allowed, each with its
// own use.
func (d *dualAuth) concurrently(t *testing.T, uses uint32, checks int) {
	t.Helper()
	req := d.grant(t, uses)
	var wg sync.WaitGroup
	results := make([]*trustfedv1.CheckInteractionResponse, checks)
	errs := make([]error, checks)
	for i := range checks {
		wg.Go(func() {
			results[i], errs[i] = d.member(i).Registry().CheckInteraction(ctxT(t), req)
		})
	}
	wg.Wait()
	allowed := map[uint64]bool{}
	for i, resp := range results {
		require.NoError(t, errs[i], "check %d", i)
		if resp.Decision == trustfedv1.Decision_DECISION_ALLOW {
			allowed[resp.AuthorizationUseIndex] = true
			continue
		}
		requireUsed(t, resp, req.AuthorizationId)
	}
	require.Len(t, allowed, int(uses), "each ALLOW took its own use")
}

// A granted dual authorisation backs max_uses ALLOW decisions (one by
// default), whichever nodes answer them: each ALLOW takes one use through
// Raft before it is answered, so every node agrees on what is left.
func TestDualAuthorizationUsesAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	admin := c.clients[leader]
	accredit(t, admin, c.fed, c.admins)
	enrolBanks(t, admin, c.fed)
	byNode := c.memberClients(t, admin, "bank-a")
	var members []*client.Client // followers first
	for _, id := range all {
		if id != leader {
			members = append(members, byNode[id])
		}
	}
	d := newDualAuth(admin, c.fed, append(members, byNode[leader])...)
	keys, err := admin.Keys(ctxT(t))
	require.NoError(t, err)

	t.Run("single use by default, the second use on another node is refused", func(t *testing.T) {
		req := d.grant(t, 0)
		resp := d.decide(t, 0, req)
		require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, "%v", resp.Reasons)
		require.NotZero(t, resp.AuthorizationUseIndex)
		st, err := client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
		require.NoError(t, err)
		require.Equal(t, resp.AuthorizationUseIndex, st.AuthorizationUseIndex, "the use taken is signed")
		requireUsed(t, d.decide(t, 1, req), req.AuthorizationId)
		requireUsed(t, d.decide(t, 0, req), req.AuthorizationId)
		got := d.authorization(t, 2, req.AuthorizationId)
		require.Zero(t, got.UsesRemaining)
		require.Equal(t, []uint64{resp.AuthorizationUseIndex}, got.UseIndexes)
	})

	t.Run("max_uses 3: three ALLOWs, then DENY", func(t *testing.T) {
		req := d.grant(t, 3)
		for i := range 3 {
			resp := d.decide(t, i, req)
			require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, "use %d: %v", i+1, resp.Reasons)
		}
		requireUsed(t, d.decide(t, 0, req), req.AuthorizationId)
	})

	t.Run("concurrent presentations: exactly max_uses ALLOWs", func(t *testing.T) {
		d.concurrently(t, 2, 9)
	})

	t.Run("max_uses is bounded", func(t *testing.T) {
		_, err := d.member(0).Registry().RequestAuthorization(ctxT(t), &trustfedv1.RequestAuthorizationRequest{Check: d.check, MaxUses: 1001})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), "max_uses: 1001 is more than 1000 uses")
	})
}

// Without audit entries for decisions (-unaudited-decisions, dev only), a
// check presenting a grant still takes its use through Raft.
func TestDualAuthorizationUsesUnaudited(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dev, admin, fed := startFederation(t, "-unaudited-decisions")
	enrolBanks(t, admin, fed)
	d := newDualAuth(admin, fed, memberOf(t, admin, dev.srv, dev.caFile, fed, "bank-a"))
	d.concurrently(t, 3, 8)
}
