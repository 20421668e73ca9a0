package main

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestProposeOptions(t *testing.T) {
	now := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600))
	start := time.Date(2026, 5, 6, 5, 8, 9, 0, time.UTC)

	o := proposeOptions{actions: []string{"task_send", "ping"}, dataCategories: []string{"payments"}, valid: "365d", minLevel: "2"}
	req, err := o.request("acme", "globex", now)
	require.NoError(t, err)
	require.Equal(t, "acme", req.GetOrganizationAId())
	require.Equal(t, "globex", req.GetOrganizationBId())
	require.Equal(t, []string{"task_send", "ping"}, req.GetScope().GetAllowedActions())
	require.Equal(t, []string{"payments"}, req.GetScope().GetDataCategories())
	require.Equal(t, start, req.GetNotBefore().AsTime(), "not_before defaults to now, to the second, and is always sent")
	require.Equal(t, start.Add(365*24*time.Hour), req.GetNotAfter().AsTime())
	require.True(t, proto.Equal(&trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, MinLevel: 2, OnPassportExpiry: true}, req.GetTermination()))
	require.Len(t, req.GetRequestId(), 32)

	o = proposeOptions{actions: []string{"ping"}, notBefore: "2026-01-01T00:00:00+01:00", notAfter: "2027-12-31T00:00:00Z", minLevel: "0", noPassportExpiry: true}
	req, err = o.request("acme", "globex", now)
	require.NoError(t, err)
	require.Equal(t, time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC), req.GetNotBefore().AsTime())
	require.Equal(t, time.Date(2027, 12, 31, 0, 0, 0, 0, time.UTC), req.GetNotAfter().AsTime())
	require.True(t, proto.Equal(&trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true}, req.GetTermination()))

	o = proposeOptions{actions: []string{"ping"}, valid: "48h", minLevel: "0"}
	req, err = o.request("acme", "globex", now)
	require.NoError(t, err)
	require.Equal(t, start.Add(48*time.Hour), req.GetNotAfter().AsTime())

	bad := []struct {
		name       string
		orgA, orgB string
		o          proposeOptions
	}{
		{"same org", "acme", "acme", proposeOptions{actions: []string{"ping"}, valid: "1d", minLevel: "0"}},
		{"bad org", "acme", "Globex", proposeOptions{actions: []string{"ping"}, valid: "1d", minLevel: "0"}},
		{"no actions", "acme", "globex", proposeOptions{valid: "1d", minLevel: "0"}},
		{"empty action", "acme", "globex", proposeOptions{actions: []string{"ping", ""}, valid: "1d", minLevel: "0"}},
		{"empty category", "acme", "globex", proposeOptions{actions: []string{"ping"}, dataCategories: []string{" "}, valid: "1d", minLevel: "0"}},
		{"no end", "acme", "globex", proposeOptions{actions: []string{"ping"}, minLevel: "0"}},
		{"both ends", "acme", "globex", proposeOptions{actions: []string{"ping"}, valid: "1d", notAfter: "2027-01-01T00:00:00Z", minLevel: "0"}},
		{"bad not-after", "acme", "globex", proposeOptions{actions: []string{"ping"}, notAfter: "2027-01-01", minLevel: "0"}},
		{"bad not-before", "acme", "globex", proposeOptions{actions: []string{"ping"}, notBefore: "tomorrow", valid: "1d", minLevel: "0"}},
		{"end before start", "acme", "globex", proposeOptions{actions: []string{"ping"}, notAfter: "2020-01-01T00:00:00Z", minLevel: "0"}},
		{"zero validity", "acme", "globex", proposeOptions{actions: []string{"ping"}, valid: "0d", minLevel: "0"}},
		{"bad valid", "acme", "globex", proposeOptions{actions: []string{"ping"}, valid: "a year", minLevel: "0"}},
		{"bad min level", "acme", "globex", proposeOptions{actions: []string{"ping"}, valid: "1d", minLevel: "5"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.o.request(tt.orgA, tt.orgB, now)
			requireUsageError(t, err)
		})
	}
}

func TestSignTermination(t *testing.T) {
	key, _ := testKey(t, t.TempDir(), "acme.key")
	pub := key.Public().(ed25519.PublicKey)
	req, err := signTermination("agr-0123456789abcdef", "acme", "project ended", key)
	require.NoError(t, err)
	require.Len(t, req.GetRequestId(), 32)

	var got trustfedv1.AgreementTermination
	require.NoError(t, proto.Unmarshal(req.GetTermination(), &got))
	require.True(t, proto.Equal(&trustfedv1.AgreementTermination{AgreementId: "agr-0123456789abcdef", OrganizationId: "acme", Reason: "project ended"}, &got))
	require.NoError(t, attestation.Verify(pub, attestation.PurposeTermination, req.GetTermination(), req.GetSignature()))
	require.ErrorIs(t, attestation.Verify(pub, attestation.PurposeAgreement, req.GetTermination(), req.GetSignature()), attestation.ErrSignature)

	other, _ := testKey(t, t.TempDir(), "globex.key")
	require.ErrorIs(t, attestation.Verify(other.Public().(ed25519.PublicKey), attestation.PurposeTermination, req.GetTermination(), req.GetSignature()), attestation.ErrSignature)
}

func TestTermsToSignAndSignature(t *testing.T) {
	terms := &trustfedv1.AgreementTerms{AgreementId: "agr-0123456789abcdef", OrganizationAId: "acme", OrganizationBId: "globex",
		Scope: &trustfedv1.AgreementScope{AllowedActions: []string{"ping"}}}
	b, err := proto.Marshal(terms)
	require.NoError(t, err)
	ag := &trustfedv1.Agreement{Id: "agr-0123456789abcdef", OrganizationAId: "acme", OrganizationBId: "globex", Terms: b,
		// The server's parsed copy is ignored: what is shown is what is signed.
		ParsedTerms: &trustfedv1.AgreementTerms{Scope: &trustfedv1.AgreementScope{AllowedActions: []string{"agent_spawn"}}}}

	got, err := termsToSign(ag, "agr-0123456789abcdef", "globex")
	require.NoError(t, err)
	require.Equal(t, []string{"ping"}, got.GetScope().GetAllowedActions())

	_, err = termsToSign(ag, "agr-0123456789abcdef", "initech")
	requireUsageError(t, err)
	_, err = termsToSign(ag, "agr-ffffffffffffffff", "acme")
	require.ErrorContains(t, err, "its terms name agreement")
	_, err = termsToSign(&trustfedv1.Agreement{}, "agr-0123456789abcdef", "acme")
	require.ErrorContains(t, err, "no terms")
	_, err = termsToSign(&trustfedv1.Agreement{Terms: []byte{0xff}}, "agr-0123456789abcdef", "acme")
	require.ErrorContains(t, err, "not a trustfed.v1.AgreementTerms")

	key, _ := testKey(t, t.TempDir(), "globex.key")
	req := agreementSignature(ag, "globex", key)
	require.Equal(t, "agr-0123456789abcdef", req.GetAgreementId())
	require.Equal(t, "globex", req.GetOrganizationId())
	require.NoError(t, attestation.Verify(key.Public().(ed25519.PublicKey), attestation.PurposeAgreement, b, req.GetSignature()))
}

func TestValidateAgreementID(t *testing.T) {
	require.NoError(t, validateAgreementID("agr-0123456789abcdef"))
	for _, bad := range []string{"", "agr-1", "agr-0123456789ABCDEF", "0123456789abcdef", "agr-0123456789abcdef0"} {
		requireUsageError(t, validateAgreementID(bad))
	}
}
