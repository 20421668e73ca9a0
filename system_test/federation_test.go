package system_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// admins are the approval keys a test applies admin changes with: the dev
// server's own admin, or alice and bob enrolled on a cluster.
type admins []ed25519.PrivateKey

// devAdmins loads the dev server's admin key from its data dir.
func devAdmins(t testing.TB, dataDir string) admins {
	t.Helper()
	key, err := attestation.LoadPrivateKey(filepath.Join(dataDir, "admin.key"))
	require.NoError(t, err)
	return admins{key}
}

// enrolAdmins enrols alice (who approves her own enrolment, as the first
// admin of a federation does) and bob (approved by alice alone, as the
// federation has fewer admins than its default quorum of 2); from then on
// every admin change needs both.
func enrolAdmins(t testing.TB, c *client.Client) admins {
	t.Helper()
	alice, bob := testutil.NewAdmin("alice"), testutil.NewAdmin("bob")
	for _, a := range []testutil.Admin{alice, bob} {
		change := a.Enrol()
		change.Reason = "enrol " + a.ID
		rec, err := c.ProposeAdminChange(ctxT(t), alice.Key, change, time.Hour)
		require.NoError(t, err)
		require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED, rec.Status)
	}
	return admins{alice.Key, bob.Key}
}

// apply proposes change with the first admin and has the others approve
// it, through the given clients in turn, until it is applied.
func (a admins) apply(t testing.TB, change *trustfedv1.AdminChange, clients ...*client.Client) *trustfedv1.AdminChangeRecord {
	t.Helper()
	rec, err := a.try(t, change, clients...)
	require.NoError(t, err)
	return rec
}

// try is apply returning the error of the first refused step.
func (a admins) try(t testing.TB, change *trustfedv1.AdminChange, clients ...*client.Client) (*trustfedv1.AdminChangeRecord, error) {
	t.Helper()
	if change.Reason == "" {
		change.Reason = "system test"
	}
	rec, err := clients[0].ProposeAdminChange(ctxT(t), a[0], change, time.Hour)
	for i, key := range a[1:] {
		if err != nil || rec.Status == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
			break
		}
		rec, err = clients[(i+1)%len(clients)].ApproveAdminChange(ctxT(t), key, rec.Id)
	}
	if err == nil && rec.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
		return rec, fmt.Errorf("change %s still %v after every admin approved", rec.Id, rec.Status)
	}
	return rec, err
}

// accredit accredits the federation's issuer and lifts the onboarding cap
// (so tests see the levels they declare).
func accredit(t testing.TB, c *client.Client, fed *testutil.Federation, adm admins) {
	t.Helper()
	adm.apply(t, testutil.Accredit(fed.Issuer()), c)
	adm.apply(t, testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(4)}), c)
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
	// The same request (and request id) again after an unknown outcome: an
	// election on a loaded machine must not fail the set-up.
	req := &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: a, OrganizationBId: b,
		Scope:     &trustfedv1.AgreementScope{AllowedActions: actions},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
		RequestId: fmt.Sprintf("agree-%s-%s-%d", a, b, now.UnixNano()),
	}
	var p *trustfedv1.ProposeAgreementResponse
	require.NoError(t, client.RetryUnknown(ctxT(t), func(ctx context.Context) (err error) {
		p, err = c.Membership().ProposeAgreement(ctx, req)
		return err
	}))
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING, p.Agreement.Status)
	var last *trustfedv1.Agreement
	for _, org := range []string{a, b} {
		sreq := &trustfedv1.SignAgreementRequest{AgreementId: p.Agreement.Id, OrganizationId: org, Signature: fed.SignTerms(org, p.Agreement.Terms),
			RequestId: fmt.Sprintf("sign-%s-%s", p.Agreement.Id, org)}
		require.NoError(t, client.RetryUnknown(ctxT(t), func(ctx context.Context) error {
			s, err := c.Membership().SignAgreement(ctx, sreq)
			if err == nil {
				last = s.Agreement
			}
			return err
		}))
	}
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, last.Status)
	return last
}
