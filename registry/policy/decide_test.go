package policy

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func active(id string, level uint32) *trustfedv1.Organization {
	return &trustfedv1.Organization{Id: id, DeclaredLevel: level, Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE}
}

var anAgreement = &trustfedv1.Agreement{Id: "agr-0000000000000001", ParsedTerms: &trustfedv1.AgreementTerms{Scope: &trustfedv1.AgreementScope{AllowedActions: Actions()}}}

func input(from, to *trustfedv1.Organization, action string, ag *trustfedv1.Agreement) Input {
	return Input{From: from, To: to, FromLevel: from.DeclaredLevel, ToLevel: to.DeclaredLevel, Action: action, Agreement: ag}
}

// TC1: the effective level is min(level(A), level(B)) for every pair of levels,
// and an action is allowed exactly when that minimum reaches its tier.
func TestTC1EffectiveLevelIsMinimum(t *testing.T) {
	for a := uint32(0); a <= 4; a++ {
		for b := uint32(0); b <= 4; b++ {
			for _, action := range Actions() {
				t.Run(fmt.Sprintf("%d_%d_%s", a, b, action), func(t *testing.T) {
					d := Decide(input(active("a", a), active("b", b), action, anAgreement))
					want := min(a, b)
					require.Equal(t, want, d.Effective)
					require.Equal(t, a, d.FromLevel)
					require.Equal(t, b, d.ToLevel)
					req, ok := RequiredLevel(action)
					require.True(t, ok)
					require.Equal(t, want >= req, d.Allow, "reasons: %v", d.Reasons)
				})
			}
		}
	}
}

func TestR4AgreementRequiredAboveDiscovery(t *testing.T) {
	d := Decide(input(active("a", 4), active("b", 4), "discovery", nil))
	require.True(t, d.Allow, "discovery needs no agreement")

	d = Decide(input(active("a", 4), active("b", 4), "ping", nil))
	require.False(t, d.Allow)
	require.Len(t, d.Reasons, 1)
	require.Equal(t, ReasonNoAgreement, d.Reasons[0].Code)
}

func TestEveryReasonIsReported(t *testing.T) {
	suspended := active("b", 0)
	suspended.Status = trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED
	d := Decide(input(active("a", 4), suspended, "agent_spawn", nil))
	require.False(t, d.Allow)
	var codes []string
	for _, r := range d.Reasons {
		codes = append(codes, r.Code)
	}
	require.Equal(t, []string{ReasonNotActive, ReasonLevelTooLow, ReasonNoAgreement}, codes)
}

func TestTC1TierTable(t *testing.T) {
	for action, want := range map[string]uint32{"discovery": 0, "status": 1, "ping": 1, "task_send": 2, "memory_query": 2, "context_share": 3, "collaborative_execution": 3, "memory_share_full": 4, "agent_spawn": 4} {
		got, ok := RequiredLevel(action)
		require.True(t, ok, action)
		require.Equal(t, want, got, action)
	}
	_, ok := RequiredLevel("launch_missiles")
	require.False(t, ok)
}

func TestR4AgreementMustBeInForceAndCoverTheAction(t *testing.T) {
	narrow := &trustfedv1.Agreement{Id: "agr-0000000000000002", ParsedTerms: &trustfedv1.AgreementTerms{Scope: &trustfedv1.AgreementScope{AllowedActions: []string{"ping"}}}}
	require.True(t, Decide(input(active("a", 4), active("b", 4), "ping", narrow)).Allow)
	d := Decide(input(active("a", 4), active("b", 4), "task_send", narrow))
	require.False(t, d.Allow)
	require.Equal(t, ReasonOutOfScope, d.Reasons[0].Code)

	in := input(active("a", 4), active("b", 4), "ping", narrow)
	in.AgreementEnded = "agreement agr-0000000000000002 ended at 2026-01-01T00:00:00Z (end date)"
	d = Decide(in)
	require.False(t, d.Allow)
	require.Equal(t, ReasonAgreementNotInForce, d.Reasons[0].Code)
	require.Contains(t, d.Reasons[0].Message, "end date")
}

func profile(mutate func(*trustfedv1.ControlProfile)) *trustfedv1.ControlProfile {
	p := &trustfedv1.ControlProfile{
		DataHandling:        &trustfedv1.DataHandling{},
		ActionAuthorization: &trustfedv1.ActionAuthorization{},
		Logging:             &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY},
		Escalation:          &trustfedv1.Escalation{},
	}
	mutate(p)
	return p
}

func withProfile(o *trustfedv1.Organization, p *trustfedv1.ControlProfile) *trustfedv1.Organization {
	o.ControlProfile = p
	return o
}

// Scenario A (AG-783): a level-4 bank and a level-2 bank. The effective
// level is 2, the level-2 controls apply, and a settlement above the value
// limit is refused while one needing dual authorisation is held back.
func TestScenarioAEffectiveLevelIsTheWeakerBanks(t *testing.T) {
	bankA := withProfile(active("bank-a", 4), profile(func(p *trustfedv1.ControlProfile) {
		p.ActionAuthorization.Limits = []*trustfedv1.ActionLimit{{Action: "task_send", MaxValue: 1_000_000}}
		p.ActionAuthorization.DualAuthorizationAboveValue = 500_000
		p.DataHandling.PiiRules = []*trustfedv1.PiiRule{{Type: trustfedv1.PiiType_PII_TYPE_CREDIT_CARD, ByLevel: []trustfedv1.PiiAction{4, 4, 3, 2, 1}}}
	}))
	bankB := withProfile(active("bank-b", 2), profile(func(p *trustfedv1.ControlProfile) {
		p.ActionAuthorization.Limits = []*trustfedv1.ActionLimit{{Action: "task_send", MaxValue: 250_000}}
	}))
	in := input(bankA, bankB, "task_send", anAgreement)
	in.DataTypes = []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_CREDIT_CARD}

	in.Value = 100_000
	d := Decide(in)
	require.True(t, d.Allow, "%v", d.Reasons)
	require.EqualValues(t, 2, d.Effective)
	require.Equal(t, trustfedv1.PiiAction_PII_ACTION_REDACT, PIIAction(d.Controls, trustfedv1.PiiType_PII_TYPE_CREDIT_CARD, d.Effective), "level-2 rule of the stricter profile")
	require.EqualValues(t, 250_000, d.Controls.ActionAuthorization.Limits[0].MaxValue, "lower limit wins")

	in.Value = 300_000
	d = Decide(in)
	require.False(t, d.Allow)
	require.Equal(t, ReasonValueOverLimit, d.Reasons[0].Code)

	bankB.ControlProfile.ActionAuthorization.Limits = nil
	in.Value = 600_000
	d = Decide(in)
	require.False(t, d.Allow)
	require.Equal(t, ReasonDualAuthorization, d.Reasons[0].Code, "above the dual-authorisation threshold: held until two approvals exist")
}

func TestTC3ControlsDeny(t *testing.T) {
	a := withProfile(active("a", 4), profile(func(p *trustfedv1.ControlProfile) {
		p.DataHandling.ResidencyRegions = []string{"EU"}
		p.ActionAuthorization.AllowedActions = []string{"ping", "task_send"}
		p.DataHandling.PiiRules = []*trustfedv1.PiiRule{{Type: trustfedv1.PiiType_PII_TYPE_SSN, ByLevel: []trustfedv1.PiiAction{4, 4, 4, 4, 4}}}
	}))
	b := withProfile(active("b", 4), profile(func(p *trustfedv1.ControlProfile) {
		p.DataHandling.ResidencyRegions = []string{"US"}
	}))
	in := input(a, b, "context_share", anAgreement)
	in.DataTypes = []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_SSN}
	d := Decide(in)
	require.False(t, d.Allow)
	var codes []string
	for _, r := range d.Reasons {
		codes = append(codes, r.Code)
	}
	require.Equal(t, []string{ReasonControlsConflict, ReasonActionNotAllowed, ReasonPIIBlocked}, codes, "every reason, in a stable order")
	require.Contains(t, d.Reasons[0].Message, "residency")
}

// BenchmarkDecide measures the pure decision (tiers, levels, resolver,
// PII/value/dual-authorisation rules) without network or signing.
func BenchmarkDecide(b *testing.B) {
	full := func(limit int64) *trustfedv1.ControlProfile {
		p := profile(func(p *trustfedv1.ControlProfile) {
			for t := trustfedv1.PiiType(1); t <= 14; t++ {
				p.DataHandling.PiiRules = append(p.DataHandling.PiiRules, &trustfedv1.PiiRule{Type: t, ByLevel: []trustfedv1.PiiAction{4, 4, 3, 2, 1}})
			}
			p.DataHandling.ResidencyRegions = []string{"EU", "UK"}
			p.ActionAuthorization.Limits = []*trustfedv1.ActionLimit{{Action: "task_send", MaxValue: limit}}
		})
		return p
	}
	in := input(withProfile(active("bank-a", 4), full(1_000_000)), withProfile(active("bank-b", 2), full(250_000)), "task_send", anAgreement)
	in.DataTypes = []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_EMAIL, trustfedv1.PiiType_PII_TYPE_CREDIT_CARD}
	in.Value = 1000
	b.ReportAllocs()
	for b.Loop() {
		if d := Decide(in); !d.Allow {
			b.Fatalf("denied: %v", d.Reasons)
		}
	}
}
