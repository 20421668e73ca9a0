package system_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TC4: every decision carries its index, decided_at and a valid_until no
// later than decided_at + the federation's window, and a signature anyone can
// verify offline with the published key; a client refuses it past valid_until.
func TestSignedFreshDecisions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "bank-a", 4, "bank-b", 2, []string{"task_send", "ping"})
	d, c, member := p.d, p.admin, p.member

	// Public keys need no token.
	code, body := d.do(t, "GET", "/v1/keys", "", nil)
	require.Equal(t, 200, code, "%v", body)
	require.Len(t, body["keys"], 1, "the dev node's own key (endorsed at bootstrap): no cluster-wide registry key")

	anon, err := client.New(ctxT(t), client.Config{Addr: d.srv.Addrs.GRPCAddr, CACertFile: d.caFile})
	require.NoError(t, err)
	defer anon.Close()
	keys, err := anon.Keys(ctxT(t))
	require.NoError(t, err)

	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "task_send",
		DataTypes: []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_EMAIL}, Value: 100}
	resp, err := member.Registry().CheckInteraction(ctxT(t), req)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, "%v", resp.Reasons)
	decided, valid := resp.DecidedAt.AsTime(), resp.ValidUntil.AsTime()
	require.Equal(t, 5*time.Minute, valid.Sub(decided), "default freshness window")
	require.NotZero(t, resp.Meta.Index)

	require.Equal(t, trustfedv1.Certification_CERTIFICATION_QUORUM, resp.Certification)
	require.Empty(t, resp.Signature, "no node signs a certified decision on its own")
	require.Len(t, resp.Certificate.GetSignatures(), 1, "a single node is its own quorum")
	sig := resp.Certificate.Signatures[0]
	require.Equal(t, "dev", sig.NodeId)
	require.Equal(t, "dev", keys[sig.KeyId].GetNodeId(), "the node vouches with its own endorsed key")
	st, err := client.VerifyDecision(resp, keys, decided)
	require.NoError(t, err)
	require.Equal(t, "bank-a", st.FromOrganizationId)
	require.Equal(t, resp.Meta.Index, st.Index)
	_, err = client.VerifyDecision(resp, keys, valid)
	require.ErrorIs(t, err, attestation.ErrDecisionExpired, "never used at or past valid_until")

	for name, forge := range map[string]func(*trustfedv1.CheckInteractionResponse){
		"effective level":             func(r *trustfedv1.CheckInteractionResponse) { r.EffectiveLevel = 4 },
		"requires dual authorisation": func(r *trustfedv1.CheckInteractionResponse) { r.RequiresDualAuthorization = true },
		"authorisation relied on":     func(r *trustfedv1.CheckInteractionResponse) { r.AuthorizationId = "auth-0000000000000001" },
		"level caps":                  func(r *trustfedv1.CheckInteractionResponse) { r.FromLevelCaps[0].Level++ },
	} {
		forged := proto.CloneOf(resp)
		forge(forged)
		_, err = client.VerifyDecision(forged, keys, decided)
		require.ErrorIs(t, err, attestation.ErrDecisionMismatch, "an answer whose %s differs from the signed statement", name)
	}
	tampered := proto.CloneOf(resp)
	tampered.Statement[len(tampered.Statement)-1] ^= 1
	_, err = client.VerifyDecision(tampered, keys, decided)
	require.ErrorIs(t, err, attestation.ErrNotCertified, "a statement not in the certified batch")

	// The window is federation policy, at most 10 minutes.
	_, err = d.admins.try(t, testutil.Policy(&trustfedv1.FederationPolicyChange{FreshnessWindow: durationpb.New(11 * time.Minute)}), c)
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	d.admins.apply(t, testutil.Policy(&trustfedv1.FederationPolicyChange{FreshnessWindow: durationpb.New(time.Minute)}), c)
	resp, err = member.Registry().CheckInteraction(ctxT(t), req)
	require.NoError(t, err)
	require.Equal(t, time.Minute, resp.ValidUntil.AsTime().Sub(resp.DecidedAt.AsTime()))
}

// TC5 end to end: a settlement above the dual-authorisation threshold is
// denied until both banks approve an authorisation for exactly it.
func TestDualAuthorizationEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d, c, fed := startFederation(t)
	enrol(t, c, fed, "bank-a", 4, func(r *trustfedv1.Registration) {
		r.ControlProfile.ActionAuthorization = &trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 500_000}
	})
	enrol(t, c, fed, "bank-b", 2)
	enrol(t, c, fed, "bank-c", 2)
	agree(t, c, fed, "bank-a", "bank-b", "task_send")
	member := memberOf(t, c, d.srv, d.caFile, fed, "bank-a")

	check := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "task_send", Value: 600_000}
	resp, err := member.Registry().CheckInteraction(ctxT(t), check)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision)
	require.True(t, resp.RequiresDualAuthorization)

	small := proto.CloneOf(check)
	small.Value = 100_000
	_, err = member.Registry().RequestAuthorization(ctxT(t), &trustfedv1.RequestAuthorizationRequest{Check: small})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "below the threshold nothing needs authorising")

	ar, err := member.Registry().RequestAuthorization(ctxT(t), &trustfedv1.RequestAuthorizationRequest{Check: check})
	require.NoError(t, err)
	a := ar.Authorization
	approve := func(org string) error {
		_, err := c.Membership().ApproveAuthorization(ctxT(t), &trustfedv1.ApproveAuthorizationRequest{AuthorizationId: a.Id, OrganizationId: org, Signature: fed.SignAuthorization(org, a.Statement)})
		return err
	}
	require.Equal(t, codes.InvalidArgument, status.Code(approve("bank-c")), "an approver from a third organisation")
	require.NoError(t, approve("bank-a"))
	require.Equal(t, codes.AlreadyExists, status.Code(approve("bank-a")), "one principal approving twice")

	withID := proto.CloneOf(check)
	withID.AuthorizationId = a.Id
	resp, err = member.Registry().CheckInteraction(ctxT(t), withID)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision, "one approval is not enough")

	require.NoError(t, approve("bank-b"))
	resp, err = member.Registry().CheckInteraction(ctxT(t), withID)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, "%v", resp.Reasons)
	require.Equal(t, a.Id, resp.AuthorizationId)
	keys, err := c.Keys(ctxT(t))
	require.NoError(t, err)
	st, err := client.VerifyDecision(resp, keys, resp.DecidedAt.AsTime())
	require.NoError(t, err)
	require.Equal(t, a.Id, st.AuthorizationId, "the grant is part of the signed decision")

	other := proto.CloneOf(withID)
	other.Value = 900_000
	resp, err = member.Registry().CheckInteraction(ctxT(t), other)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision, "the grant covers exactly one interaction")

	// The same flow with the CLI and key files; bank-a's member node asks.
	dir := t.TempDir()
	asMember := memberFiles(t, dir, testutil.EnrolMember(t, c, fed, "bank-a", ""))
	for _, org := range []string{"bank-a", "bank-b"} {
		require.NoError(t, attestation.SavePrivateKey(filepath.Join(dir, org+".key"), fed.Key(org)))
	}
	out, errOut, code := d.cli(t, "", append(asMember, "authorization", "request", "--from", "bank-a", "--to", "bank-b", "--action", "task_send", "--value", "700000", "--max-uses", "2", "-o", "json")...)
	require.Equal(t, 0, code, errOut)
	var opened struct {
		Authorization struct {
			ID string `json:"id"`
		} `json:"authorization"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &opened), out)
	for _, org := range []string{"bank-a", "bank-b"} {
		out, errOut, code = d.cli(t, d.token, "authorization", "approve", opened.Authorization.ID, "--org", org, "--org-key", filepath.Join(dir, org+".key"))
		require.Equal(t, 0, code, "%s %s", out, errOut)
	}
	require.Contains(t, out, "GRANTED")
	require.Regexp(t, `Uses left: +2 of 2\n`, out)
	checkCLI := append(asMember, "check", "--from", "bank-a", "--to", "bank-b", "--action", "task_send", "--value", "700000", "--authorization", opened.Authorization.ID, "--verify")
	for range 2 {
		out, errOut, code = d.cli(t, "", checkCLI...)
		require.Equal(t, 0, code, "%s %s", out, errOut)
		require.Contains(t, out, "ALLOW")
		require.Regexp(t, `Dual authorisation: +required; granted authorisation: `+opened.Authorization.ID+` \(the use taken at index \d+\)\n`, out)
	}
	out, errOut, code = d.cli(t, "", checkCLI...)
	require.Equal(t, 3, code, "%s %s", out, errOut)
	require.Contains(t, out, "has already been used (2 of 2 uses)")
	out, errOut, code = d.cli(t, d.token, "authorization", "get", opened.Authorization.ID)
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `Uses left: +0 of 2\n`, out)
}
