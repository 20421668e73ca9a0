package system_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// accredit accredits the federation's issuer and lifts the onboarding cap
// (so tests see the levels they declare).
func accredit(t testing.TB, c *client.Client, fed *testutil.Federation) {
	t.Helper()
	_, err := c.Admin().AccreditIssuer(ctxT(t), &trustfedv1.AccreditIssuerRequest{IssuerId: fed.IssuerID, Name: "Acme Assessor", PublicKeyPem: fed.IssuerPEM(), MaxLevel: 4})
	require.NoError(t, err)
	cap4 := uint32(4)
	_, err = c.Admin().UpdateFederationPolicy(ctxT(t), &trustfedv1.UpdateFederationPolicyRequest{OnboardingCapLevel: &cap4})
	require.NoError(t, err)
}

// enrol registers org (declared = attested = level) and approves it.
func enrol(t testing.TB, c *client.Client, fed *testutil.Federation, org string, level uint32, mutate ...func(*trustfedv1.Registration)) *trustfedv1.Organization {
	t.Helper()
	reg, sig := fed.Registration(org, level, level, time.Now(), mutate...)
	resp, err := c.Membership().RegisterOrganization(ctxT(t), &trustfedv1.RegisterOrganizationRequest{Registration: reg, Signature: sig})
	require.NoError(t, err)
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING, resp.Organization.Status)
	ap, err := c.Admin().ApproveOrganization(ctxT(t), &trustfedv1.ApproveOrganizationRequest{OrganizationId: org})
	require.NoError(t, err)
	return ap.Organization
}

// agree proposes an agreement between a and b covering actions and has
// both sign it; it returns the active agreement.
func agree(t testing.TB, c *client.Client, fed *testutil.Federation, a, b string, actions ...string) *trustfedv1.Agreement {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Second)
	p, err := c.Membership().ProposeAgreement(ctxT(t), &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: a, OrganizationBId: b,
		Scope:     &trustfedv1.AgreementScope{AllowedActions: actions},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
	})
	require.NoError(t, err)
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING, p.Agreement.Status)
	var last *trustfedv1.Agreement
	for _, org := range []string{a, b} {
		s, err := c.Membership().SignAgreement(ctxT(t), &trustfedv1.SignAgreementRequest{AgreementId: p.Agreement.Id, OrganizationId: org, Signature: fed.SignTerms(org, p.Agreement.Terms)})
		require.NoError(t, err)
		last = s.Agreement
	}
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, last.Status)
	return last
}
