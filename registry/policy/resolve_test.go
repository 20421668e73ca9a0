package policy

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Short names for PII actions in tables.
const (
	pU = trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED
	pP = trustfedv1.PiiAction_PII_ACTION_PASS
	pH = trustfedv1.PiiAction_PII_ACTION_HASH
	pR = trustfedv1.PiiAction_PII_ACTION_REDACT
	pB = trustfedv1.PiiAction_PII_ACTION_BLOCK
)

const (
	email = trustfedv1.PiiType_PII_TYPE_EMAIL
	ssn   = trustfedv1.PiiType_PII_TYPE_SSN
	card  = trustfedv1.PiiType_PII_TYPE_CREDIT_CARD
)

func rule(t trustfedv1.PiiType, by ...trustfedv1.PiiAction) *trustfedv1.PiiRule {
	return &trustfedv1.PiiRule{Type: t, ByLevel: by}
}

func dh(d *trustfedv1.DataHandling) *trustfedv1.ControlProfile {
	return &trustfedv1.ControlProfile{DataHandling: d}
}

func aa(a *trustfedv1.ActionAuthorization) *trustfedv1.ControlProfile {
	return &trustfedv1.ControlProfile{ActionAuthorization: a}
}

func lg(l *trustfedv1.Logging) *trustfedv1.ControlProfile {
	return &trustfedv1.ControlProfile{Logging: l}
}

func esc(e *trustfedv1.Escalation) *trustfedv1.ControlProfile {
	return &trustfedv1.ControlProfile{Escalation: e}
}

func limit(action string, v int64) *trustfedv1.ActionLimit {
	return &trustfedv1.ActionLimit{Action: action, MaxValue: v}
}

func conflictFields(cs []Conflict) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Field)
	}
	return out
}

func requireProtoEqual(t testing.TB, want, got proto.Message, msgAndArgs ...any) {
	t.Helper()
	if !proto.Equal(want, got) {
		require.Fail(t, fmt.Sprintf("protos differ\nwant: %v\n got: %v", want, got), msgAndArgs...)
	}
}

// TestTC3ResolveRules has at least one case per row of the precedence table.
// Every case is also checked with the arguments swapped.
func TestTC3ResolveRules(t *testing.T) {
	for _, tc := range []struct {
		name      string
		a, b      *trustfedv1.ControlProfile
		want      *trustfedv1.ControlProfile
		conflicts []string // fields, in table order
	}{
		{name: "pii: the stricter action per level",
			a:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pP, pH, pR, pB, pP)}}),
			b:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB, pP, pP, pP, pH)}}),
			want: dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB, pH, pR, pB, pH)}})},
		{name: "pii: a type one side leaves out takes the other side's rule; sorted by type",
			a:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(ssn, pB, pB, pB, pB, pB)}}),
			b:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(card, pB, pB, pR, pH, pP), rule(email, pR, pR, pR, pH, pH)}}),
			want: dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pR, pR, pR, pH, pH), rule(ssn, pB, pB, pB, pB, pB), rule(card, pB, pB, pR, pH, pP)}})},
		{name: "pii: UNSPECIFIED takes the other side's action, PASS when neither states one",
			a:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pU, pU, pH, pU, pU)}}),
			b:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pU, pR, pP, pU, pB)}}),
			want: dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pP, pR, pH, pP, pB)}})},
		{name: "pii: a short rule is completed to five levels",
			a:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB)}}),
			b:    dh(&trustfedv1.DataHandling{}),
			want: dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB, pP, pP, pP, pP)}})},
		{name: "pii: an unknown action reads as BLOCK",
			a:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, 9, pP, pP, pP, -1)}}),
			b:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pH, pH, pH, pH, pH)}}),
			want: dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB, pH, pH, pH, pB)}})},
		{name: "pii: a type twice on one side is merged",
			a:    dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB, pP, pP, pP, pP), rule(email, pP, pP, pP, pP, pR)}}),
			b:    nil,
			want: dh(&trustfedv1.DataHandling{PiiRules: []*trustfedv1.PiiRule{rule(email, pB, pP, pP, pP, pR)}})},
		{name: "retention: shorter wins",
			a:    dh(&trustfedv1.DataHandling{RetentionDays: 30}),
			b:    dh(&trustfedv1.DataHandling{RetentionDays: 90}),
			want: dh(&trustfedv1.DataHandling{RetentionDays: 30})},
		{name: "retention: 0 (not retained) is the shortest",
			a:    dh(&trustfedv1.DataHandling{EncryptionAtRestRequired: true}),
			b:    dh(&trustfedv1.DataHandling{RetentionDays: 90}),
			want: dh(&trustfedv1.DataHandling{EncryptionAtRestRequired: true})},
		{name: "retention: a missing category states nothing",
			a:    &trustfedv1.ControlProfile{},
			b:    dh(&trustfedv1.DataHandling{RetentionDays: 90}),
			want: dh(&trustfedv1.DataHandling{RetentionDays: 90})},
		{name: "residency: intersection, sorted",
			a:    dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"US", "EU", "CH"}}),
			b:    dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"JP", "CH", "EU"}}),
			want: dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"CH", "EU"}})},
		{name: "residency: an empty list is no restriction",
			a:    dh(&trustfedv1.DataHandling{}),
			b:    dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"US", "EU", "US"}}),
			want: dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"EU", "US"}})},
		{name: "residency: both restrict, nothing in common: conflict",
			a:         dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"EU"}, RetentionDays: 30}),
			b:         dh(&trustfedv1.DataHandling{ResidencyRegions: []string{"US", "CA"}, RetentionDays: 30}),
			want:      dh(&trustfedv1.DataHandling{RetentionDays: 30}),
			conflicts: []string{"data_handling.residency_regions"}},
		{name: "encryption at rest: either requires",
			a:    dh(&trustfedv1.DataHandling{}),
			b:    dh(&trustfedv1.DataHandling{EncryptionAtRestRequired: true}),
			want: dh(&trustfedv1.DataHandling{EncryptionAtRestRequired: true})},
		{name: "allowed actions: intersection, sorted",
			a:    aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"task_send", "ping", "status"}}),
			b:    aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"status", "task_send", "context_share"}}),
			want: aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"status", "task_send"}})},
		{name: "allowed actions: an empty list is no restriction",
			a:    aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"ping", "discovery"}}),
			b:    aa(&trustfedv1.ActionAuthorization{}),
			want: aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"discovery", "ping"}})},
		{name: "allowed actions: both restrict, nothing in common: conflict",
			a:         aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"ping"}}),
			b:         aa(&trustfedv1.ActionAuthorization{AllowedActions: []string{"task_send"}}),
			want:      aa(&trustfedv1.ActionAuthorization{}),
			conflicts: []string{"action_authorization.allowed_actions"}},
		{name: "limits: the lower wins per action; one-sided limits stay; sorted by action",
			a:    aa(&trustfedv1.ActionAuthorization{Limits: []*trustfedv1.ActionLimit{limit("task_send", 1_000_000), limit("agent_spawn", 5)}}),
			b:    aa(&trustfedv1.ActionAuthorization{Limits: []*trustfedv1.ActionLimit{limit("task_send", 250_000), limit("memory_query", 0)}}),
			want: aa(&trustfedv1.ActionAuthorization{Limits: []*trustfedv1.ActionLimit{limit("agent_spawn", 5), limit("memory_query", 0), limit("task_send", 250_000)}})},
		{name: "dual authorisation threshold: the lower non-zero wins",
			a:    aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 500_000}),
			b:    aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 100_000}),
			want: aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 100_000})},
		{name: "dual authorisation threshold: 0 is no threshold",
			a:    aa(&trustfedv1.ActionAuthorization{}),
			b:    aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 100_000}),
			want: aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 100_000})},
		{name: "dual authorisation threshold: negative is no threshold",
			a:    aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: -1}),
			b:    aa(&trustfedv1.ActionAuthorization{}),
			want: aa(&trustfedv1.ActionAuthorization{})},
		{name: "dual authorisation always: either requires",
			a:    aa(&trustfedv1.ActionAuthorization{DualAuthorizationAlways: true}),
			b:    aa(&trustfedv1.ActionAuthorization{DualAuthorizationAboveValue: 10}),
			want: aa(&trustfedv1.ActionAuthorization{DualAuthorizationAlways: true, DualAuthorizationAboveValue: 10})},
		{name: "log detail: higher wins",
			a:    lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL}),
			b:    lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY}),
			want: lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL})},
		{name: "log detail: UNSPECIFIED states nothing",
			a:    lg(&trustfedv1.Logging{}),
			b:    lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_NONE}),
			want: lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_NONE})},
		{name: "log detail: an unknown value reads as FULL",
			a:    lg(&trustfedv1.Logging{Detail: 7}),
			b:    lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY}),
			want: lg(&trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL})},
		{name: "audit retention: longer wins",
			a:    lg(&trustfedv1.Logging{AuditRetentionYears: 7}),
			b:    lg(&trustfedv1.Logging{AuditRetentionYears: 10}),
			want: lg(&trustfedv1.Logging{AuditRetentionYears: 10})},
		{name: "escalation delay: shorter wins",
			a:    esc(&trustfedv1.Escalation{MaxEscalationDelay: durationpb.New(time.Hour)}),
			b:    esc(&trustfedv1.Escalation{MaxEscalationDelay: durationpb.New(15 * time.Minute)}),
			want: esc(&trustfedv1.Escalation{MaxEscalationDelay: durationpb.New(15 * time.Minute)})},
		{name: "escalation delay: unset states nothing",
			a:    esc(&trustfedv1.Escalation{HumanInTheLoop: true}),
			b:    esc(&trustfedv1.Escalation{MaxEscalationDelay: durationpb.New(time.Hour)}),
			want: esc(&trustfedv1.Escalation{HumanInTheLoop: true, MaxEscalationDelay: durationpb.New(time.Hour)})},
		{name: "human in the loop: either requires",
			a:    esc(&trustfedv1.Escalation{}),
			b:    esc(&trustfedv1.Escalation{HumanInTheLoop: true}),
			want: esc(&trustfedv1.Escalation{HumanInTheLoop: true})},
		{name: "incident notification deadline: shorter wins",
			a:    esc(&trustfedv1.Escalation{IncidentNotificationDeadline: durationpb.New(72 * time.Hour)}),
			b:    esc(&trustfedv1.Escalation{IncidentNotificationDeadline: durationpb.New(24 * time.Hour)}),
			want: esc(&trustfedv1.Escalation{IncidentNotificationDeadline: durationpb.New(24 * time.Hour)})},
		{name: "nil profiles state nothing",
			a: nil, b: nil,
			want: &trustfedv1.ControlProfile{}},
		{name: "a nil profile leaves the other one alone",
			a: nil,
			b: &trustfedv1.ControlProfile{
				DataHandling:        &trustfedv1.DataHandling{RetentionDays: 30, ResidencyRegions: []string{"EU"}},
				ActionAuthorization: &trustfedv1.ActionAuthorization{AllowedActions: []string{"ping"}},
				Logging:             &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL},
				Escalation:          &trustfedv1.Escalation{HumanInTheLoop: true},
			},
			want: &trustfedv1.ControlProfile{
				DataHandling:        &trustfedv1.DataHandling{RetentionDays: 30, ResidencyRegions: []string{"EU"}},
				ActionAuthorization: &trustfedv1.ActionAuthorization{AllowedActions: []string{"ping"}},
				Logging:             &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL},
				Escalation:          &trustfedv1.Escalation{HumanInTheLoop: true},
			}},
		{name: "every conflict, in table order",
			a: &trustfedv1.ControlProfile{
				DataHandling:        &trustfedv1.DataHandling{ResidencyRegions: []string{"EU"}},
				ActionAuthorization: &trustfedv1.ActionAuthorization{AllowedActions: []string{"ping"}},
			},
			b: &trustfedv1.ControlProfile{
				DataHandling:        &trustfedv1.DataHandling{ResidencyRegions: []string{"US"}},
				ActionAuthorization: &trustfedv1.ActionAuthorization{AllowedActions: []string{"status"}},
			},
			want: &trustfedv1.ControlProfile{
				DataHandling:        &trustfedv1.DataHandling{},
				ActionAuthorization: &trustfedv1.ActionAuthorization{},
			},
			conflicts: []string{"data_handling.residency_regions", "action_authorization.allowed_actions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, swap := range []bool{false, true} {
				a, b := tc.a, tc.b
				if swap {
					a, b = b, a
				}
				got, conflicts := Resolve(a, b)
				requireProtoEqual(t, tc.want, got, "swapped=%v", swap)
				require.Equal(t, tc.conflicts, conflictFields(conflicts), "swapped=%v", swap)
				for _, in := range []*trustfedv1.ControlProfile{a, b} {
					requireNeverLooser(t, got, conflicts, in)
				}
			}
		})
	}
}

func TestTC3ResolveConflictReasons(t *testing.T) {
	a := &trustfedv1.ControlProfile{
		DataHandling:        &trustfedv1.DataHandling{ResidencyRegions: []string{"EU", "CH"}},
		ActionAuthorization: &trustfedv1.ActionAuthorization{AllowedActions: []string{"ping"}},
	}
	b := &trustfedv1.ControlProfile{
		DataHandling:        &trustfedv1.DataHandling{ResidencyRegions: []string{"US"}},
		ActionAuthorization: &trustfedv1.ActionAuthorization{AllowedActions: []string{"task_send", "status"}},
	}
	_, ab := Resolve(a, b)
	_, ba := Resolve(b, a)
	require.Equal(t, ab, ba, "the same conflicts, the same words, whichever side is which")
	require.Equal(t, []Conflict{
		{Category: CategoryDataHandling, Field: "data_handling.residency_regions",
			Reason: "no residency region satisfies both profiles: one allows only [CH EU], the other only [US]"},
		{Category: CategoryActionAuthorization, Field: "action_authorization.allowed_actions",
			Reason: "no action is allowed by both profiles: one allows only [ping], the other only [status task_send]"},
	}, ab)
}

// The resolver neither changes its inputs nor returns anything that shares
// memory with them.
func TestResolveDoesNotTouchInputs(t *testing.T) {
	a, b := bankProfiles()
	a0, b0 := proto.Clone(a), proto.Clone(b)
	got, _ := Resolve(a, b)
	requireProtoEqual(t, a0, a)
	requireProtoEqual(t, b0, b)
	scribble(got)
	requireProtoEqual(t, a0, a)
	requireProtoEqual(t, b0, b)

	one, _ := Resolve(a, nil) // the one-sided path copies too
	scribble(one)
	requireProtoEqual(t, a0, a)
}

func scribble(p *trustfedv1.ControlProfile) {
	for _, r := range p.DataHandling.PiiRules {
		r.Type = 99
		for i := range r.ByLevel {
			r.ByLevel[i] = 0
		}
	}
	for i := range p.DataHandling.ResidencyRegions {
		p.DataHandling.ResidencyRegions[i] = "XX"
	}
	for i := range p.ActionAuthorization.AllowedActions {
		p.ActionAuthorization.AllowedActions[i] = "xx"
	}
	for _, l := range p.ActionAuthorization.Limits {
		l.MaxValue = -5
	}
	p.Escalation.MaxEscalationDelay.Seconds = -1
	p.Escalation.IncidentNotificationDeadline.Seconds = -1
}

// Two realistic profiles: a level-4 bank and a level-2 bank (AG-783 Scenario A),
// each with a rule for all 14 PII types.
func bankProfiles() (a, b *trustfedv1.ControlProfile) {
	var rulesA, rulesB []*trustfedv1.PiiRule
	for t := trustfedv1.PiiType(14); t >= 1; t-- { // reverse order: the resolver sorts
		switch t {
		case trustfedv1.PiiType_PII_TYPE_API_KEY, trustfedv1.PiiType_PII_TYPE_JWT, trustfedv1.PiiType_PII_TYPE_AWS_KEY,
			trustfedv1.PiiType_PII_TYPE_PASSWORD, trustfedv1.PiiType_PII_TYPE_PRIVATE_KEY,
			trustfedv1.PiiType_PII_TYPE_DATABASE_URL, trustfedv1.PiiType_PII_TYPE_GITHUB_TOKEN:
			rulesA = append(rulesA, rule(t, pB, pB, pB, pB, pB))
			rulesB = append(rulesB, rule(t, pB, pB, pB, pB, pB))
		case trustfedv1.PiiType_PII_TYPE_SSN, trustfedv1.PiiType_PII_TYPE_CREDIT_CARD:
			rulesA = append(rulesA, rule(t, pB, pB, pR, pH, pH))
			rulesB = append(rulesB, rule(t, pB, pB, pB, pR, pR))
		default:
			rulesA = append(rulesA, rule(t, pB, pR, pH, pP, pP))
			rulesB = append(rulesB, rule(t, pR, pR, pR, pH, pP))
		}
	}
	a = &trustfedv1.ControlProfile{
		DataHandling: &trustfedv1.DataHandling{
			PiiRules: rulesA, RetentionDays: 365, ResidencyRegions: []string{"US", "EU", "UK", "CH"}, EncryptionAtRestRequired: true,
		},
		ActionAuthorization: &trustfedv1.ActionAuthorization{
			AllowedActions:              []string{"discovery", "status", "ping", "task_send", "task_receive", "memory_query", "context_share", "collaborative_execution", "memory_share_full", "agent_spawn"},
			Limits:                      []*trustfedv1.ActionLimit{limit("task_send", 10_000_000), limit("collaborative_execution", 5_000_000), limit("agent_spawn", 1)},
			DualAuthorizationAboveValue: 1_000_000,
		},
		Logging: &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_SUMMARY, AuditRetentionYears: 7},
		Escalation: &trustfedv1.Escalation{
			MaxEscalationDelay: durationpb.New(time.Hour), IncidentNotificationDeadline: durationpb.New(72 * time.Hour),
		},
	}
	b = &trustfedv1.ControlProfile{
		DataHandling: &trustfedv1.DataHandling{
			PiiRules: rulesB, RetentionDays: 90, ResidencyRegions: []string{"EU", "UK"}, EncryptionAtRestRequired: true,
		},
		ActionAuthorization: &trustfedv1.ActionAuthorization{
			AllowedActions:              []string{"discovery", "status", "ping", "task_send", "task_receive", "memory_query"},
			Limits:                      []*trustfedv1.ActionLimit{limit("task_send", 250_000), limit("memory_query", 0)},
			DualAuthorizationAboveValue: 100_000,
		},
		Logging: &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL, AuditRetentionYears: 10},
		Escalation: &trustfedv1.Escalation{
			MaxEscalationDelay: durationpb.New(15 * time.Minute), HumanInTheLoop: true, IncidentNotificationDeadline: durationpb.New(24 * time.Hour),
		},
	}
	return a, b
}

func TestTC3ResolveBanks(t *testing.T) {
	a, b := bankProfiles()
	got, conflicts := Resolve(a, b)
	require.Empty(t, conflicts)
	require.Len(t, got.DataHandling.PiiRules, 14)
	for i, r := range got.DataHandling.PiiRules {
		require.Equal(t, trustfedv1.PiiType(i+1), r.Type, "sorted by type")
	}
	require.Equal(t, []trustfedv1.PiiAction{pB, pB, pB, pR, pR}, got.DataHandling.PiiRules[card-1].ByLevel)
	require.Equal(t, []trustfedv1.PiiAction{pB, pR, pR, pH, pP}, got.DataHandling.PiiRules[email-1].ByLevel)
	require.EqualValues(t, 90, got.DataHandling.RetentionDays)
	require.Equal(t, []string{"EU", "UK"}, got.DataHandling.ResidencyRegions)
	require.Equal(t, []string{"discovery", "memory_query", "ping", "status", "task_receive", "task_send"}, got.ActionAuthorization.AllowedActions)
	wantLimits := []*trustfedv1.ActionLimit{limit("agent_spawn", 1), limit("collaborative_execution", 5_000_000), limit("memory_query", 0), limit("task_send", 250_000)}
	require.Len(t, got.ActionAuthorization.Limits, len(wantLimits))
	for i, l := range wantLimits {
		requireProtoEqual(t, l, got.ActionAuthorization.Limits[i], "lower limit per action, sorted by action")
	}
	require.EqualValues(t, 100_000, got.ActionAuthorization.DualAuthorizationAboveValue)
	require.Equal(t, trustfedv1.LogDetail_LOG_DETAIL_FULL, got.Logging.Detail)
	require.EqualValues(t, 10, got.Logging.AuditRetentionYears)
	require.Equal(t, 15*time.Minute, got.Escalation.MaxEscalationDelay.AsDuration())
	require.Equal(t, 24*time.Hour, got.Escalation.IncidentNotificationDeadline.AsDuration())
	require.True(t, got.Escalation.HumanInTheLoop)
	requireNeverLooser(t, got, nil, a)
	requireNeverLooser(t, got, nil, b)
}

// --- property tests ----------------------------------------------------------

const propertyCases = 3000

// TestTC3ResolveProperties checks, over random pairs of profiles (seeded), that
// Resolve is commutative, idempotent, never looser than either input, no
// stricter than the stricter input, and reports only genuine conflicts.
// Associativity is not required.
func TestTC3ResolveProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(20261124, 783))
	conflicted := 0
	for i := range propertyCases {
		a := randomProfile(rng)
		var b *trustfedv1.ControlProfile
		switch rng.IntN(4) {
		case 0:
			b = randomProfile(rng)
		case 1:
			b = proto.Clone(a).(*trustfedv1.ControlProfile)
		default:
			b = mixProfiles(rng, a, randomProfile(rng)) // many equal and overlapping values
		}
		if rng.IntN(20) == 0 {
			b = nil
		}
		if i%200 == 0 {
			a, b = nil, a
		}
		a0, b0 := proto.Clone(a), proto.Clone(b)

		ab, cab := Resolve(a, b)
		ba, cba := Resolve(b, a)
		requireProtoEqual(t, a0, a, "case %d: input a modified", i)
		requireProtoEqual(t, b0, b, "case %d: input b modified", i)

		// Commutative.
		requireProtoEqual(t, ab, ba, "case %d: not commutative\na: %v\nb: %v", i, a, b)
		require.ElementsMatch(t, cab, cba, "case %d: conflicts differ when swapped", i)

		// Idempotent: a profile resolved with itself is its normal form,
		// and a resolved profile is already in normal form.
		for _, p := range []*trustfedv1.ControlProfile{a, b} {
			pp, c := Resolve(p, p)
			require.Empty(t, c, "case %d: a profile conflicts with itself: %v", i, p)
			requireProtoEqual(t, normalize(p), pp, "case %d: Resolve(p, p) is not normalize(p)", i)
		}
		again, c := Resolve(ab, ab)
		require.Empty(t, c)
		requireProtoEqual(t, ab, again, "case %d: the result is not in normal form", i)

		// Never looser than either input (except where a conflict denies).
		requireNeverLooser(t, ab, cab, a)
		requireNeverLooser(t, ab, cab, b)
		// ... and never stricter than the stricter of the two.
		require.NoError(t, noStricterThanBoth(ab, a, b), "case %d\na: %v\nb: %v\nresolved: %v", i, a, b, ab)
		// Conflicts are genuine.
		requireGenuineConflicts(t, cab, a, b)
		if len(cab) > 0 {
			conflicted++
		}
	}
	t.Logf("%d of %d pairs had conflicts", conflicted, propertyCases)
	require.Greater(t, conflicted, propertyCases/100, "the generator should produce conflicts now and then")
	require.Less(t, conflicted, propertyCases/2, "... but not mostly")
}

// Resolve(a, nil) and Resolve(nil, a) are a's normal form.
func TestResolveNilIsIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 1000 {
		a := randomProfile(rng)
		got, c := Resolve(a, nil)
		require.Empty(t, c)
		requireProtoEqual(t, normalize(a), got, "case %d", i)
		got, _ = Resolve(nil, a)
		requireProtoEqual(t, normalize(a), got, "case %d", i)
	}
}

var (
	poolRegions   = []string{"EU", "US", "UK", "CH", "JP"}
	poolDurations = []*durationpb.Duration{nil, durationpb.New(30 * time.Second), durationpb.New(5 * time.Minute), durationpb.New(time.Hour), durationpb.New(time.Hour + 500)}
)

func cloneDuration(d *durationpb.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return &durationpb.Duration{Seconds: d.Seconds, Nanos: d.Nanos}
}

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

// subset is a shuffled random subset of pool, now and then with a duplicate.
func subset(r *rand.Rand, pool []string) []string {
	var out []string
	for _, s := range pool {
		if r.IntN(2) == 0 {
			out = append(out, s)
		}
	}
	if len(out) > 0 && r.IntN(8) == 0 {
		out = append(out, out[0])
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func randomPIIAction(r *rand.Rand) trustfedv1.PiiAction {
	switch n := r.IntN(60); {
	case n < 5:
		return pU
	case n == 5:
		return trustfedv1.PiiAction(5 + r.IntN(3)) // unknown
	default:
		return trustfedv1.PiiAction(1 + n%4)
	}
}

func randomProfile(r *rand.Rand) *trustfedv1.ControlProfile {
	p := &trustfedv1.ControlProfile{}
	if r.IntN(5) != 0 {
		d := &trustfedv1.DataHandling{
			RetentionDays:            pick(r, []uint32{0, 7, 30, 90, 365}),
			EncryptionAtRestRequired: r.IntN(2) == 0,
		}
		for t := trustfedv1.PiiType(1); t <= 14; t++ {
			if r.IntN(2) == 0 {
				continue
			}
			n := numLevels
			if r.IntN(12) == 0 {
				n = r.IntN(numLevels)
			}
			by := make([]trustfedv1.PiiAction, n)
			for l := range by {
				by[l] = randomPIIAction(r)
			}
			d.PiiRules = append(d.PiiRules, rule(t, by...))
		}
		if len(d.PiiRules) > 0 && r.IntN(10) == 0 { // a duplicate type
			dup := proto.Clone(d.PiiRules[0]).(*trustfedv1.PiiRule)
			dup.ByLevel = append(dup.ByLevel, randomPIIAction(r))
			dup.ByLevel[0] = randomPIIAction(r)
			d.PiiRules = append(d.PiiRules, dup)
		}
		r.Shuffle(len(d.PiiRules), func(i, j int) { d.PiiRules[i], d.PiiRules[j] = d.PiiRules[j], d.PiiRules[i] })
		if r.IntN(3) != 0 {
			d.ResidencyRegions = subset(r, poolRegions)
		}
		p.DataHandling = d
	}
	if r.IntN(5) != 0 {
		a := &trustfedv1.ActionAuthorization{
			DualAuthorizationAboveValue: pick(r, []int64{0, 0, 100_000, 500_000, -1}),
			DualAuthorizationAlways:     r.IntN(4) == 0,
		}
		if r.IntN(3) != 0 {
			a.AllowedActions = subset(r, Actions())
		}
		for _, action := range subset(r, Actions()) {
			a.Limits = append(a.Limits, limit(action, pick(r, []int64{0, 1000, 250_000, 1_000_000})))
		}
		p.ActionAuthorization = a
	}
	if r.IntN(5) != 0 {
		p.Logging = &trustfedv1.Logging{
			Detail:              trustfedv1.LogDetail(r.IntN(5)), // 4 is unknown
			AuditRetentionYears: pick(r, []uint32{0, 1, 7, 10}),
		}
	}
	if r.IntN(5) != 0 {
		p.Escalation = &trustfedv1.Escalation{
			MaxEscalationDelay:           cloneDuration(pick(r, poolDurations)),
			HumanInTheLoop:               r.IntN(3) == 0,
			IncidentNotificationDeadline: cloneDuration(pick(r, poolDurations)),
		}
	}
	return p
}

// mixProfiles takes each category from x or y (copied).
func mixProfiles(r *rand.Rand, x, y *trustfedv1.ControlProfile) *trustfedv1.ControlProfile {
	from := func() *trustfedv1.ControlProfile {
		if r.IntN(2) == 0 {
			return x
		}
		return y
	}
	out := &trustfedv1.ControlProfile{}
	if d := from().DataHandling; d != nil {
		out.DataHandling = proto.Clone(d).(*trustfedv1.DataHandling)
	}
	if a := from().ActionAuthorization; a != nil {
		out.ActionAuthorization = proto.Clone(a).(*trustfedv1.ActionAuthorization)
	}
	if l := from().Logging; l != nil {
		out.Logging = proto.Clone(l).(*trustfedv1.Logging)
	}
	if e := from().Escalation; e != nil {
		out.Escalation = proto.Clone(e).(*trustfedv1.Escalation)
	}
	return out
}

// --- reference helpers (written independently of resolve.go) ---------------

// piiRank is the strictness of a stated PII action: 0 for "states nothing",
// unknown values count as BLOCK.
func piiRank(v trustfedv1.PiiAction) int {
	switch {
	case v == pU:
		return 0
	case v >= pP && v <= pB:
		return int(v)
	default:
		return int(pB)
	}
}

func logRank(v trustfedv1.LogDetail) int {
	if v >= 0 && v <= trustfedv1.LogDetail_LOG_DETAIL_FULL {
		return int(v)
	}
	return int(trustfedv1.LogDetail_LOG_DETAIL_FULL)
}

// statedPII is the strictest action p states for type t at level l (0 = none).
func statedPII(p *trustfedv1.ControlProfile, t trustfedv1.PiiType, l int) int {
	rank := 0
	for _, r := range p.GetDataHandling().GetPiiRules() {
		if r.Type == t && l < len(r.ByLevel) {
			rank = max(rank, piiRank(r.ByLevel[l]))
		}
	}
	return rank
}

func set(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

func limitsOf(p *trustfedv1.ControlProfile) map[string]int64 {
	m := map[string]int64{}
	for _, l := range p.GetActionAuthorization().GetLimits() {
		if v, ok := m[l.Action]; !ok || l.MaxValue < v {
			m[l.Action] = l.MaxValue
		}
	}
	return m
}

// normalize is the normal form of a profile, as documented on Resolve.
func normalize(p *trustfedv1.ControlProfile) *trustfedv1.ControlProfile {
	out := &trustfedv1.ControlProfile{}
	if d := p.GetDataHandling(); d != nil {
		nd := &trustfedv1.DataHandling{RetentionDays: d.RetentionDays, EncryptionAtRestRequired: d.EncryptionAtRestRequired}
		width := map[trustfedv1.PiiType]int{}
		for _, r := range d.PiiRules {
			width[r.Type] = max(width[r.Type], len(r.ByLevel), numLevels)
		}
		for t, w := range width {
			by := make([]trustfedv1.PiiAction, w)
			for l := range by {
				by[l] = trustfedv1.PiiAction(max(statedPII(p, t, l), int(pP)))
			}
			nd.PiiRules = append(nd.PiiRules, rule(t, by...))
		}
		slices.SortFunc(nd.PiiRules, func(x, y *trustfedv1.PiiRule) int { return cmp.Compare(x.Type, y.Type) })
		nd.ResidencyRegions = slices.Compact(slices.Sorted(slices.Values(d.ResidencyRegions)))
		out.DataHandling = nd
	}
	if a := p.GetActionAuthorization(); a != nil {
		na := &trustfedv1.ActionAuthorization{
			AllowedActions:              slices.Compact(slices.Sorted(slices.Values(a.AllowedActions))),
			DualAuthorizationAboveValue: max(a.DualAuthorizationAboveValue, 0),
			DualAuthorizationAlways:     a.DualAuthorizationAlways,
		}
		lim := limitsOf(p)
		for _, action := range slices.Sorted(maps.Keys(lim)) {
			na.Limits = append(na.Limits, limit(action, lim[action]))
		}
		out.ActionAuthorization = na
	}
	if l := p.GetLogging(); l != nil {
		out.Logging = &trustfedv1.Logging{Detail: trustfedv1.LogDetail(logRank(l.Detail)), AuditRetentionYears: l.AuditRetentionYears}
	}
	if e := p.GetEscalation(); e != nil {
		out.Escalation = proto.Clone(e).(*trustfedv1.Escalation)
	}
	return out
}

// looser is a field in which a resolved profile is looser than an input.
type looser struct{ field, detail string }

func (l looser) Error() string { return l.field + ": " + l.detail }

// atLeastAsStrict returns nil when resolved is at least as strict as input in
// every field, or an error naming every field where it is looser.
func atLeastAsStrict(resolved, input *trustfedv1.ControlProfile) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, looser{field, fmt.Sprintf(format, args...)})
	}
	if d := input.GetDataHandling(); d != nil {
		rd := resolved.GetDataHandling()
		for _, r := range d.PiiRules {
			for l := range r.ByLevel {
				if want, got := piiRank(r.ByLevel[l]), piiRank(PIIAction(resolved, r.Type, uint32(l))); got < want {
					bad("data_handling.pii_rules", "%v at level %d: %v, input states %v", r.Type, l, PIIAction(resolved, r.Type, uint32(l)), r.ByLevel[l])
				}
			}
		}
		if rd == nil || rd.RetentionDays > d.RetentionDays {
			bad("data_handling.retention_days", "%d days, input %d", rd.GetRetentionDays(), d.RetentionDays)
		}
		if err := narrower(rd.GetResidencyRegions(), d.ResidencyRegions); err != "" {
			bad("data_handling.residency_regions", "%s", err)
		}
		if d.EncryptionAtRestRequired && !rd.GetEncryptionAtRestRequired() {
			bad("data_handling.encryption_at_rest_required", "not required, input requires it")
		}
	}
	if a := input.GetActionAuthorization(); a != nil {
		ra := resolved.GetActionAuthorization()
		if err := narrower(ra.GetAllowedActions(), a.AllowedActions); err != "" {
			bad("action_authorization.allowed_actions", "%s", err)
		}
		got := limitsOf(resolved)
		for action, want := range limitsOf(input) {
			if v, ok := got[action]; !ok || v > want {
				bad("action_authorization.limits", "%q: %d (present: %v), input %d", action, v, ok, want)
			}
		}
		if want, got := a.DualAuthorizationAboveValue, ra.GetDualAuthorizationAboveValue(); want > 0 && (got <= 0 || got > want) {
			bad("action_authorization.dual_authorization_above_value", "%d, input %d", got, want)
		}
		if a.DualAuthorizationAlways && !ra.GetDualAuthorizationAlways() {
			bad("action_authorization.dual_authorization_always", "not required, input requires it")
		}
	}
	if l := input.GetLogging(); l != nil {
		rl := resolved.GetLogging()
		if logRank(rl.GetDetail()) < logRank(l.Detail) {
			bad("logging.detail", "%v, input %v", rl.GetDetail(), l.Detail)
		}
		if rl.GetAuditRetentionYears() < l.AuditRetentionYears {
			bad("logging.audit_retention_years", "%d, input %d", rl.GetAuditRetentionYears(), l.AuditRetentionYears)
		}
	}
	if e := input.GetEscalation(); e != nil {
		re := resolved.GetEscalation()
		if want, got := e.MaxEscalationDelay, re.GetMaxEscalationDelay(); want != nil && (got == nil || got.AsDuration() > want.AsDuration()) {
			bad("escalation.max_escalation_delay", "%v, input %v", got, want)
		}
		if e.HumanInTheLoop && !re.GetHumanInTheLoop() {
			bad("escalation.human_in_the_loop", "not required, input requires it")
		}
		if want, got := e.IncidentNotificationDeadline, re.GetIncidentNotificationDeadline(); want != nil && (got == nil || got.AsDuration() > want.AsDuration()) {
			bad("escalation.incident_notification_deadline", "%v, input %v", got, want)
		}
	}
	return errors.Join(errs...)
}

// narrower reports how a resolved restriction list is looser than an input's
// (empty = no restriction), or "".
func narrower(resolved, input []string) string {
	if len(input) == 0 {
		return ""
	}
	if len(resolved) == 0 {
		return fmt.Sprintf("no restriction, input allows only %v", input)
	}
	in := set(input)
	for _, v := range resolved {
		if !in[v] {
			return fmt.Sprintf("allows %q, input allows only %v", v, input)
		}
	}
	return ""
}

// requireNeverLooser fails unless resolved is at least as strict as input in
// every field that is not reported as a conflict.
func requireNeverLooser(t testing.TB, resolved *trustfedv1.ControlProfile, conflicts []Conflict, input *trustfedv1.ControlProfile) {
	t.Helper()
	err := atLeastAsStrict(resolved, input)
	if err == nil {
		return
	}
	inConflict := set(conflictFields(conflicts))
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var l looser
		require.ErrorAs(t, e, &l)
		require.True(t, inConflict[l.field], "resolved is looser than an input: %v\ninput: %v\nresolved: %v", e, input, resolved)
	}
}

// noStricterThanBoth checks that every field of resolved is no stricter than
// the stricter of a and b: together with atLeastAsStrict, that it is exactly
// the stricter one.
func noStricterThanBoth(resolved, a, b *trustfedv1.ControlProfile) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, cat := range []struct {
		name            string
		resolved, sides bool
	}{
		{"data_handling", resolved.DataHandling != nil, a.GetDataHandling() != nil || b.GetDataHandling() != nil},
		{"action_authorization", resolved.ActionAuthorization != nil, a.GetActionAuthorization() != nil || b.GetActionAuthorization() != nil},
		{"logging", resolved.Logging != nil, a.GetLogging() != nil || b.GetLogging() != nil},
		{"escalation", resolved.Escalation != nil, a.GetEscalation() != nil || b.GetEscalation() != nil},
	} {
		if cat.resolved != cat.sides {
			bad("%s: present %v, stated by an input %v", cat.name, cat.resolved, cat.sides)
		}
	}
	if d := resolved.GetDataHandling(); d != nil {
		for _, r := range d.PiiRules {
			stated := func(p *trustfedv1.ControlProfile) bool {
				return slices.ContainsFunc(p.GetDataHandling().GetPiiRules(), func(x *trustfedv1.PiiRule) bool { return x.Type == r.Type })
			}
			if !stated(a) && !stated(b) {
				bad("pii_rules: %v is in neither input", r.Type)
			}
			if len(r.ByLevel) < numLevels {
				bad("pii_rules: %v has %d levels", r.Type, len(r.ByLevel))
			}
			for l, v := range r.ByLevel {
				if want := max(statedPII(a, r.Type, l), statedPII(b, r.Type, l), int(pP)); piiRank(v) != want || v != trustfedv1.PiiAction(want) {
					bad("pii_rules: %v level %d is %v, the stricter input says %v", r.Type, l, v, trustfedv1.PiiAction(want))
				}
			}
		}
		stated := func(p *trustfedv1.ControlProfile) (uint32, bool) {
			return p.GetDataHandling().GetRetentionDays(), p.GetDataHandling() != nil
		}
		ok := false
		for _, p := range []*trustfedv1.ControlProfile{a, b} {
			if v, s := stated(p); s && v == d.RetentionDays {
				ok = true
			}
		}
		if !ok {
			bad("retention_days %d comes from neither input", d.RetentionDays)
		}
		if err := wider(d.ResidencyRegions, a.GetDataHandling().GetResidencyRegions(), b.GetDataHandling().GetResidencyRegions()); err != "" {
			bad("residency_regions: %s", err)
		}
		if d.EncryptionAtRestRequired && !a.GetDataHandling().GetEncryptionAtRestRequired() && !b.GetDataHandling().GetEncryptionAtRestRequired() {
			bad("encryption_at_rest_required invented")
		}
	}
	if x := resolved.GetActionAuthorization(); x != nil {
		if err := wider(x.AllowedActions, a.GetActionAuthorization().GetAllowedActions(), b.GetActionAuthorization().GetAllowedActions()); err != "" {
			bad("allowed_actions: %s", err)
		}
		la, lb := limitsOf(a), limitsOf(b)
		for _, l := range x.Limits {
			va, oka := la[l.Action]
			vb, okb := lb[l.Action]
			if !(oka && va == l.MaxValue || okb && vb == l.MaxValue) {
				bad("limit %q %d comes from neither input", l.Action, l.MaxValue)
			}
		}
		if v := x.DualAuthorizationAboveValue; v != 0 && v != a.GetActionAuthorization().GetDualAuthorizationAboveValue() && v != b.GetActionAuthorization().GetDualAuthorizationAboveValue() {
			bad("dual_authorization_above_value %d comes from neither input", v)
		}
		if x.DualAuthorizationAlways && !a.GetActionAuthorization().GetDualAuthorizationAlways() && !b.GetActionAuthorization().GetDualAuthorizationAlways() {
			bad("dual_authorization_always invented")
		}
	}
	if l := resolved.GetLogging(); l != nil {
		if want := max(logRank(a.GetLogging().GetDetail()), logRank(b.GetLogging().GetDetail())); int(l.Detail) != want {
			bad("logging.detail %v, want %v", l.Detail, trustfedv1.LogDetail(want))
		}
		if l.AuditRetentionYears != a.GetLogging().GetAuditRetentionYears() && l.AuditRetentionYears != b.GetLogging().GetAuditRetentionYears() {
			bad("audit_retention_years %d comes from neither input", l.AuditRetentionYears)
		}
	}
	if e := resolved.GetEscalation(); e != nil {
		for _, d := range []struct {
			name      string
			got, x, y *durationpb.Duration
		}{
			{"max_escalation_delay", e.MaxEscalationDelay, a.GetEscalation().GetMaxEscalationDelay(), b.GetEscalation().GetMaxEscalationDelay()},
			{"incident_notification_deadline", e.IncidentNotificationDeadline, a.GetEscalation().GetIncidentNotificationDeadline(), b.GetEscalation().GetIncidentNotificationDeadline()},
		} {
			if d.got != nil && !proto.Equal(d.got, d.x) && !proto.Equal(d.got, d.y) {
				bad("%s %v comes from neither input", d.name, d.got)
			}
		}
		if e.HumanInTheLoop && !a.GetEscalation().GetHumanInTheLoop() && !b.GetEscalation().GetHumanInTheLoop() {
			bad("human_in_the_loop invented")
		}
	}
	return errors.Join(errs...)
}

// wider reports a resolved restriction list that excludes a value both
// inputs accept (empty = no restriction), or "".
func wider(resolved, x, y []string) string {
	if len(resolved) == 0 {
		return ""
	}
	got := set(resolved)
	for _, v := range append(slices.Clone(x), y...) {
		if (len(x) == 0 || slices.Contains(x, v)) && (len(y) == 0 || slices.Contains(y, v)) && !got[v] {
			return fmt.Sprintf("%q is accepted by both inputs but not by the result %v", v, resolved)
		}
	}
	return ""
}

// requireGenuineConflicts checks that each conflict is on a list both inputs
// restrict with nothing in common.
func requireGenuineConflicts(t testing.TB, conflicts []Conflict, a, b *trustfedv1.ControlProfile) {
	t.Helper()
	lists := map[string][2][]string{
		"data_handling.residency_regions":      {a.GetDataHandling().GetResidencyRegions(), b.GetDataHandling().GetResidencyRegions()},
		"action_authorization.allowed_actions": {a.GetActionAuthorization().GetAllowedActions(), b.GetActionAuthorization().GetAllowedActions()},
	}
	for field, l := range lists {
		x, y := l[0], l[1]
		disjoint := len(x) > 0 && len(y) > 0 && !slices.ContainsFunc(x, func(v string) bool { return slices.Contains(y, v) })
		require.Equal(t, disjoint, slices.Contains(conflictFields(conflicts), field), "%s: %v vs %v, conflicts %v", field, x, y, conflicts)
	}
	require.LessOrEqual(t, len(conflicts), 2)
}

// --- the table and its documentation ----------------------------------------

// Every field of every category has exactly one row, in field order.
func TestPrecedenceTableCoversEveryField(t *testing.T) {
	var want []string
	cats := (&trustfedv1.ControlProfile{}).ProtoReflect().Descriptor().Fields()
	for i := range cats.Len() {
		c := cats.Get(i)
		require.NotNil(t, c.Message(), "category %s is a message", c.Name())
		fields := c.Message().Fields()
		for j := range fields.Len() {
			want = append(want, string(c.Name())+"."+string(fields.Get(j).Name()))
		}
	}
	var got []string
	for _, r := range precedence {
		got = append(got, r.field)
		require.True(t, strings.HasPrefix(r.field, categoryNames[r.category]+"."), r.field)
	}
	require.Equal(t, want, got)
}

// docs/controls.md carries the same table as the code, row for row.
func TestPrecedenceTableDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/controls.md")
	require.NoError(t, err)
	var rows []string
	for _, r := range precedence {
		row := fmt.Sprintf("| %s | `%s` | %s |", categoryNames[r.category], r.field, r.rule)
		require.Contains(t, string(doc), row+"\n", "docs/controls.md lacks or differs in the row")
		rows = append(rows, row)
	}
	require.Contains(t, string(doc), strings.Join(rows, "\n"), "rows in table order")
}

func BenchmarkResolve(b *testing.B) {
	x, y := bankProfiles()
	b.ReportAllocs()
	for b.Loop() {
		out, conflicts := Resolve(x, y)
		if len(conflicts) != 0 || len(out.DataHandling.PiiRules) != 14 {
			b.Fatal("unexpected result")
		}
	}
}
