package state

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TC6: each bad registration is rejected with its own reason and nothing is
// stored; the good one is accepted.
func TestTC6Registration(t *testing.T) {
	type regFn func(h *harness) (reg, sig []byte)
	good := func(mutate ...func(*harness, *trustfedv1.Registration)) regFn {
		return func(h *harness) ([]byte, []byte) {
			var ms []func(*trustfedv1.Registration)
			for _, m := range mutate {
				ms = append(ms, func(r *trustfedv1.Registration) { m(h, r) })
			}
			return h.fed.Registration("new-org", 2, 3, h.now, ms...)
		}
	}
	cases := []struct {
		name    string
		reg     regFn
		is      error
		field   string
		message string
	}{
		{"bad signature", func(h *harness) ([]byte, []byte) {
			reg, sig := good()(h)
			sig[0] ^= 0xff
			return reg, sig
		}, ErrInvalidArgument, "signature", "does not verify"},
		{"signature replayed from another registration", func(h *harness) ([]byte, []byte) {
			_, otherSig := h.fed.Registration("new-org", 1, 3, h.now)
			reg, _ := good()(h)
			return reg, otherSig
		}, ErrInvalidArgument, "signature", "does not verify"},
		{"signed by another key", func(h *harness) ([]byte, []byte) {
			reg, _ := good()(h)
			_, k, _ := ed25519.GenerateKey(rand.Reader)
			return reg, attestation.Sign(k, attestation.PurposeRegistration, reg)
		}, ErrInvalidArgument, "signature", "does not verify"},
		{"expired passport", good(func(h *harness, r *trustfedv1.Registration) {
			r.Passport = h.fed.Passport(r.OrganizationId, 3, t0.Add(-48*time.Hour), t0.Add(-time.Hour))
		}), ErrInvalidArgument, "registration.passport", "expired"},
		{"passport not yet valid", good(func(h *harness, r *trustfedv1.Registration) {
			r.Passport = h.fed.Passport(r.OrganizationId, 3, t0.Add(time.Hour), t0.Add(48*time.Hour))
		}), ErrInvalidArgument, "registration.passport", "not"},
		{"passport for another key", good(func(h *harness, r *trustfedv1.Registration) {
			r.Passport = h.fed.PassportForKey(r.OrganizationId, otherKey(), 3, t0.Add(-time.Hour), t0.Add(time.Hour))
		}), ErrInvalidArgument, "registration.passport", ""},
		{"passport for another organisation", good(func(h *harness, r *trustfedv1.Registration) {
			r.Passport = h.fed.PassportForKey("acme-bank", h.fed.PublicKey(r.OrganizationId), 3, t0.Add(-time.Hour), t0.Add(time.Hour))
		}), ErrInvalidArgument, "registration.passport", ""},
		{"duplicate key", func(h *harness) ([]byte, []byte) {
			h.fed.SetKey("new-org", h.fed.Key("acme-bank"))
			return h.fed.Registration("new-org", 2, 3, h.now)
		}, ErrAlreadyExists, "registration.public_key", "already registered"},
		{"passport from an unaccredited issuer", good(func(h *harness, r *trustfedv1.Registration) {
			other := testutil.NewFederation(h.t)
			other.IssuerID = "rogue-assessor"
			r.Passport = other.Passport(r.OrganizationId, 3, t0.Add(-time.Hour), t0.Add(time.Hour))
		}), ErrInvalidArgument, "registration.passport", "issuer"},
		{"registration names another key than the one that signed", good(func(h *harness, r *trustfedv1.Registration) {
			r.PublicKey = otherKey()
		}), ErrInvalidArgument, "signature", "does not verify"},
		{"declared level above attested", good(func(h *harness, r *trustfedv1.Registration) { r.DeclaredLevel = 4 }), ErrInvalidArgument, "registration.declared_level", "above the level 3"},
		{"bad id", good(func(h *harness, r *trustfedv1.Registration) { r.OrganizationId = "Not An Id" }), ErrInvalidArgument, "registration.organization_id", ""},
		{"empty name", good(func(h *harness, r *trustfedv1.Registration) { r.Name = "" }), ErrInvalidArgument, "registration.name", ""},
		{"bad jurisdiction", good(func(h *harness, r *trustfedv1.Registration) { r.Jurisdiction = "E U" }), ErrInvalidArgument, "registration.jurisdiction", ""},
		{"level out of range", good(func(h *harness, r *trustfedv1.Registration) { r.DeclaredLevel = 5 }), ErrInvalidArgument, "registration.declared_level", ""},
		{"short key", good(func(h *harness, r *trustfedv1.Registration) { r.PublicKey = r.PublicKey[:5] }), ErrInvalidArgument, "registration.public_key", ""},
		{"http endpoint", good(func(h *harness, r *trustfedv1.Registration) {
			r.NotificationEndpoints = []string{"http://x.example/hook"}
		}), ErrInvalidArgument, "registration.notification_endpoints[0]", "https"},
		{"no control profile", good(func(h *harness, r *trustfedv1.Registration) { r.ControlProfile = nil }), ErrInvalidArgument, "registration.control_profile", ""},
		{"bad pii rule", good(func(h *harness, r *trustfedv1.Registration) {
			r.ControlProfile.DataHandling = &trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{{Type: trustfedv1.PiiType_PII_TYPE_EMAIL, ByLevel: []trustfedv1.PiiAction{trustfedv1.PiiAction_PII_ACTION_BLOCK}}}}
		}), ErrInvalidArgument, "registration.control_profile.data_handling.pii_rules[0].by_level", ""},
		{"short nonce", good(func(h *harness, r *trustfedv1.Registration) { r.Nonce = "x" }), ErrInvalidArgument, "registration.nonce", ""},
		{"duplicate id", func(h *harness) ([]byte, []byte) {
			return h.fed.Registration("acme-bank", 2, 3, h.now, func(r *trustfedv1.Registration) { r.Name = "Another"; r.PublicKey = h.fed.PublicKey("acme-bank") })
		}, ErrAlreadyExists, "registration.organization_id", ""},
		{"duplicate name", good(func(h *harness, r *trustfedv1.Registration) { r.Name = "org acme-bank" }), ErrAlreadyExists, "registration.name", ""},
		{"not a registration", func(h *harness) ([]byte, []byte) { return []byte{0xff, 0x01}, nil }, ErrInvalidArgument, "registration", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.accredit()
			h.member("acme-bank", 3, 3)
			before := stripIndex(t, h.snapshotBytes())
			reg, sig := tc.reg(h)
			res := h.apply(&commandv1.RegisterOrganization{Registration: reg, Signature: sig}, "")
			require.ErrorIs(t, res.Err, tc.is)
			var e *Error
			require.ErrorAs(t, res.Err, &e)
			require.Equal(t, tc.field, e.Field, "%v", res.Err)
			require.Contains(t, e.Msg, tc.message)
			require.Equal(t, before, stripIndex(t, h.snapshotBytes()), "nothing stored")
		})
	}
	t.Run("good registration is accepted, pending until approved", func(t *testing.T) {
		h := newHarness(t)
		h.accredit()
		reg, sig := h.fed.Registration("new-org", 2, 3, h.now)
		require.NoError(t, h.apply(&commandv1.RegisterOrganization{Registration: reg, Signature: sig}, "").Err)
		o, ok := h.read().Organization("new-org")
		require.True(t, ok)
		require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING, o.Status)
		require.EqualValues(t, 3, o.Passport.Level)
		fp, _ := attestation.Verifier{}.Fingerprint(h.fed.PublicKey("new-org"))
		require.Equal(t, fp, o.PublicKeyFingerprint)
		h.must(&commandv1.ApproveOrganization{OrganizationId: "new-org"})
		o, _ = h.read().Organization("new-org")
		require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, o.Status)
		require.True(t, o.OnboardingUntil.AsTime().Equal(h.now.Add(DefaultOnboardingPeriod)))
	})
}

func otherKey() []byte {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return pub
}

// TC7: a new member declared 4 and attested 4 is treated as level 2 until
// the onboarding period has passed, then 4; an override lifts the cap early
// and is recorded. Time moves through commands.
func TestTC7OnboardingCap(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("new-bank", 4, 4)
	require.EqualValues(t, 2, h.level("new-bank"))
	o, _ := h.read().Organization("new-bank")
	caps := h.read().OrganizationLevel(o, h.now).Caps
	require.Equal(t, CapOnboarding, caps[len(caps)-1].Source)

	h.now = h.now.Add(DefaultOnboardingPeriod - time.Second)
	require.EqualValues(t, 2, h.level("new-bank"), "still onboarding one second before the end")
	h.now = h.now.Add(time.Second)
	require.EqualValues(t, 4, h.level("new-bank"), "cap gone when the period has passed")

	h2 := newHarness(t)
	h2.accredit()
	h2.member("fast-bank", 4, 4)
	h2.mustChange(testutil.OverrideOnboarding("fast-bank", "regulator sandbox"))
	require.EqualValues(t, 4, h2.level("fast-bank"))
	o, _ = h2.read().Organization("fast-bank")
	require.Equal(t, "regulator sandbox", o.OnboardingOverride.Reason)
	require.Contains(t, o.OnboardingOverride.Principal, "admins alice")
}

// Passport expiry and issuer withdrawal lower levels at the next decision,
// with no admin action.
func TestTC4PassportExpiryAndIssuerWithdrawal(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	h.member("acme-bank", 3, 3)
	require.EqualValues(t, 3, h.level("acme-bank"))

	h.now = h.now.Add(365*24*time.Hour + time.Second) // past the passport's expiry
	require.EqualValues(t, 0, h.level("acme-bank"))

	h2 := newHarness(t)
	h2.accredit()
	h2.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	h2.member("acme-bank", 3, 3)
	h2.member("st-mary", 3, 3)
	h2.agreement("agr-0000000000000001", "acme-bank", "st-mary", 0)
	h2.mustChange(testutil.Withdraw(h2.fed.IssuerID, "accreditation lapsed"))
	require.EqualValues(t, 0, h2.level("acme-bank"))
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h2.agreementStatus("agr-0000000000000001"),
		"on_passport_expiry: the passport no longer counts, the agreement ends")

	// Renewal with a passport from a newly accredited issuer restores the level.
	h3 := newHarness(t)
	h3.accredit()
	h3.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	h3.member("acme-bank", 3, 3)
	renewed := h3.fed.Passport("acme-bank", 2, h3.now, h3.now.Add(time.Hour))
	h3.must(&commandv1.SubmitPassport{OrganizationId: "acme-bank", Passport: renewed, Signature: h3.fed.SignPassport("acme-bank", renewed)})
	require.EqualValues(t, 2, h3.level("acme-bank"), "min(declared 3, renewed passport 2)")
	res := h3.apply(&commandv1.SubmitPassport{OrganizationId: "acme-bank", Passport: renewed, Signature: h3.fed.SignPassport("st-mary", renewed)}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument, "a passport submission signed by another key is refused")
}

func TestR4AgreementSignatures(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.member("st-mary", 3, 3)
	terms := h.terms("agr-0000000000000001", "acme-bank", "st-mary", 0)
	h.must(&commandv1.ProposeAgreement{Terms: terms})
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING, h.agreementStatus("agr-0000000000000001"))

	h.must(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "acme-bank", Signature: h.fed.SignTerms("acme-bank", terms)})
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING, h.agreementStatus("agr-0000000000000001"), "one signature is not enough")
	_, ok := h.read().ActiveAgreement("acme-bank", "st-mary")
	require.False(t, ok)

	other := h.terms("agr-0000000000000001", "acme-bank", "st-mary", 2) // different bytes
	res := h.apply(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "st-mary", Signature: h.fed.SignTerms("st-mary", other)}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument, "a signature over different bytes is refused")
	res = h.apply(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "acme-bank", Signature: h.fed.SignTerms("acme-bank", terms)}, "")
	require.ErrorIs(t, res.Err, ErrAlreadyExists, "a party signs once")

	h.must(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "st-mary", Signature: h.fed.SignTerms("st-mary", terms)})
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, h.agreementStatus("agr-0000000000000001"))
}

// Each termination condition ends the agreement (and a check then denies:
// see the registry tests for the decision).
func TestR4TerminationConditions(t *testing.T) {
	setup := func(t *testing.T, minLevel uint32) *harness {
		h := newHarness(t)
		h.accredit()
		h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
		h.member("acme-bank", 3, 3)
		h.member("st-mary", 3, 3)
		h.agreement("agr-0000000000000001", "acme-bank", "st-mary", minLevel)
		return h
	}
	ended := func(h *harness) string {
		ag, _ := h.read().Agreement("agr-0000000000000001")
		reason, isEnded := h.read().AgreementEnded(ag, h.now)
		require.True(h.t, isEnded, "agreement should have ended")
		return reason
	}
	t.Run("party suspended", func(t *testing.T) {
		h := setup(t, 0)
		h.mustChange(testutil.SetStatus("st-mary", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
		require.Contains(t, ended(h), "suspended")
	})
	t.Run("party revoked", func(t *testing.T) {
		h := setup(t, 0)
		h.mustChange(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED))
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
	})
	t.Run("level below the minimum", func(t *testing.T) {
		h := setup(t, 3)
		h.mustChange(testutil.SetLevel("st-mary", 2))
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
		require.Contains(t, ended(h), "below the agreed minimum 3")
	})
	t.Run("passport revoked", func(t *testing.T) {
		h := setup(t, 0)
		o, _ := h.read().Organization("acme-bank")
		h.mustChange(testutil.RevokePassport(o.Passport.Serial, "fraud"))
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
	})
	t.Run("passport expiry (evaluated at decision time)", func(t *testing.T) {
		h := setup(t, 0)
		h.now = h.now.Add(365*24*time.Hour + time.Second)
		require.Contains(t, ended(h), "passport no longer counts")
	})
	t.Run("end date (evaluated at decision time)", func(t *testing.T) {
		h := setup(t, 0)
		ag, _ := h.read().Agreement("agr-0000000000000001")
		h.now = ag.ParsedTerms.NotAfter.AsTime()
		require.Contains(t, ended(h), "end date")
	})
	t.Run("manual termination by either party", func(t *testing.T) {
		h := setup(t, 0)
		b, sig := h.fed.Termination("acme-bank", "agr-0000000000000001", "merger")
		res := h.apply(&commandv1.TerminateAgreement{Termination: b, Signature: h.fed.SignTerms("acme-bank", b)}, "")
		require.ErrorIs(t, res.Err, ErrInvalidArgument, "a signature for another purpose does not terminate")
		h.must(&commandv1.TerminateAgreement{Termination: b, Signature: sig})
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
		require.Contains(t, ended(h), "merger")
	})
}
