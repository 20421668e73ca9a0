package revocation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestPartners(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	fed := testutil.NewFederation(t)
	fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
	idx := uint64(0)
	apply := func(cmd proto.Message) {
		t.Helper()
		b, err := state.Encode(cmd, state.EnvelopeMeta{Time: now})
		require.NoError(t, err)
		idx++
		require.NoError(t, fsm.Apply(idx, b).(state.Result).Err)
	}
	admin := testutil.NewAdmin("alice")
	apply(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: admin.ID, Name: "Alice", PublicKey: admin.Public()}, ApprovalsRequired: 1})
	accredit := testutil.ChangeBytes(t, testutil.Accredit(fed.Issuer()), now)
	apply(&commandv1.ProposeAdminChange{Change: accredit, Approval: admin.Approve(accredit)})
	for _, id := range []string{"hub", "p-one", "p-two", "p-three", "loner"} {
		reg, sig := fed.Registration(id, 2, 2, now)
		apply(&commandv1.RegisterOrganization{Registration: reg, Signature: sig})
		apply(&commandv1.ApproveOrganization{OrganizationId: id})
	}
	agree := func(id, a, b string) {
		terms, err := proto.Marshal(&trustfedv1.AgreementTerms{AgreementId: id, OrganizationAId: a, OrganizationBId: b,
			Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"ping"}},
			NotBefore: timestamppb.New(now), NotAfter: timestamppb.New(now.Add(time.Hour)),
			Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true}})
		require.NoError(t, err)
		apply(&commandv1.ProposeAgreement{Terms: terms})
		apply(&commandv1.SignAgreement{AgreementId: id, OrganizationId: a, Signature: fed.SignTerms(a, terms)})
		apply(&commandv1.SignAgreement{AgreementId: id, OrganizationId: b, Signature: fed.SignTerms(b, terms)})
	}
	agree("agr-0000000000000001", "hub", "p-two")
	agree("agr-0000000000000002", "p-one", "hub")
	agree("agr-0000000000000003", "p-one", "p-three")

	r := fsm.Store().Read()
	require.Equal(t, []string{"p-one", "p-two"}, Partners(r, "hub"))
	require.Equal(t, []string{"hub", "p-three"}, Partners(r, "p-one"))
	require.Empty(t, Partners(r, "loner"))
}
