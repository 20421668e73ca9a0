package system_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ImportAgreements over the API: an admin's batch of signed agreements is
// written whole (all ACTIVE), a batch with one bad signature is refused
// whole naming the item, a retry under the same request id does not
// import twice, and a member may not call it.
func TestImportAgreements(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d, admin, fed := startFederation(t)
	orgs := []string{"acme", "globex", "initech", "hooli"}
	for _, org := range orgs {
		enrol(t, admin, fed, org, 3)
	}
	now := time.Now().UTC().Truncate(time.Second)
	signed := func(n int, a, b string) *trustfedv1.SignedAgreement {
		terms, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.AgreementTerms{
			AgreementId: fmt.Sprintf("agr-%016x", n), OrganizationAId: a, OrganizationBId: b,
			Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"ping"}},
			NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
			Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, OnPassportExpiry: true},
		})
		require.NoError(t, err)
		return &trustfedv1.SignedAgreement{Terms: terms, SignatureA: fed.SignTerms(a, terms), SignatureB: fed.SignTerms(b, terms)}
	}

	// One bad signature: nothing is imported.
	bad := signed(2, "acme", "initech")
	bad.SignatureB = fed.SignTerms("hooli", bad.Terms)
	_, err := admin.Admin().ImportAgreements(ctxT(t), &trustfedv1.ImportAgreementsRequest{
		Agreements: []*trustfedv1.SignedAgreement{signed(1, "acme", "globex"), bad}})
	requireFieldViolation(t, err, codes.InvalidArgument, "agreements[1].signature_b")
	list, err := admin.Admin().ListAgreements(ctxT(t), &trustfedv1.ListAgreementsRequest{})
	require.NoError(t, err)
	require.Empty(t, list.Agreements, "a refused batch writes nothing")

	// A member may not import, even its own agreements.
	member := memberClient(t, d, admin, fed, "acme")
	_, err = member.Admin().ImportAgreements(ctxT(t), &trustfedv1.ImportAgreementsRequest{
		Agreements: []*trustfedv1.SignedAgreement{signed(1, "acme", "globex")}})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)

	// A valid batch, sent twice under one request id.
	req := &trustfedv1.ImportAgreementsRequest{RequestId: "import-1", Agreements: []*trustfedv1.SignedAgreement{
		signed(1, "acme", "globex"), signed(2, "acme", "initech"), signed(3, "hooli", "globex")}}
	first, err := admin.Admin().ImportAgreements(ctxT(t), req)
	require.NoError(t, err)
	require.Equal(t, []string{"agr-0000000000000001", "agr-0000000000000002", "agr-0000000000000003"}, first.AgreementIds)
	again, err := admin.Admin().ImportAgreements(ctxT(t), req)
	require.NoError(t, err, "the same request again is answered, not refused as a duplicate agreement")
	require.Equal(t, first.AgreementIds, again.AgreementIds)
	list, err = admin.Admin().ListAgreements(ctxT(t), &trustfedv1.ListAgreementsRequest{})
	require.NoError(t, err)
	require.Len(t, list.Agreements, 3)
	for _, ag := range list.Agreements {
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, ag.Status, ag.Id)
	}
	// The imported agreement governs checks as any other.
	dec, err := member.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping"})
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Decision_DECISION_ALLOW, dec.Decision, "%v", dec)
	require.Equal(t, "agr-0000000000000001", dec.AgreementId)
}
