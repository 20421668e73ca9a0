package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestFormatLevel(t *testing.T) {
	tests := []struct {
		level uint32
		want  string
	}{
		{0, "0 (UNTRUSTED)"},
		{1, "1 (VERIFIED)"},
		{2, "2 (ATTESTED)"},
		{3, "3 (TRUSTED)"},
		{4, "4 (PRIVILEGED)"},
		{5, "5 (UNKNOWN)"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, formatLevel(tt.level))
	}
}

func TestFormatScalars(t *testing.T) {
	ts := timestamppb.New(time.Date(2026, 3, 1, 12, 30, 0, 0, time.FixedZone("x", 3600)))
	require.Equal(t, "2026-03-01T11:30:00Z", formatTime(ts))
	require.Equal(t, "-", formatTime(nil))
	require.Equal(t, "invalid", formatTime(&timestamppb.Timestamp{Nanos: -1}))
	require.Equal(t, "1.5s", formatDuration(durationpb.New(1500*time.Millisecond)))
	require.Equal(t, "-", formatDuration(nil))
	require.Equal(t, "ACTIVE", formatOrgStatus(trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE))
	require.Equal(t, "TERMINATED", formatAgreementStatus(trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED))
	require.Equal(t, "STALE", formatConsistency(trustfedv1.Consistency_CONSISTENCY_STALE))
	require.Equal(t, "DENY", formatDecision(trustfedv1.Decision_DECISION_DENY))
	require.Equal(t, "a b c  d", clean("a\tb\nc\x1b\x7fd"))
	require.Equal(t, "Zoë", clean("Zoë"))
}

func TestWriteCheck(t *testing.T) {
	tests := []struct {
		name string
		resp *trustfedv1.CheckInteractionResponse
		want string
	}{
		{
			name: "allow",
			resp: &trustfedv1.CheckInteractionResponse{
				Decision: trustfedv1.Decision_DECISION_ALLOW, FromLevel: 3, ToLevel: 2, EffectiveLevel: 2, RequiredLevel: 2,
				AgreementId: "agr-0123456789abcdef",
				Meta:        &trustfedv1.ReadMeta{Index: 42, Consistency: trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE, NodeId: "n1"},
				FromLevelCaps: []*trustfedv1.LevelCap{
					{Source: "declared", Level: 4, Detail: "declared by the organisation"},
					{Source: "passport", Level: 3, Detail: "passport p1 from eu-assessors"},
				},
				ToLevelCaps: []*trustfedv1.LevelCap{
					{Source: "declared", Level: 4, Detail: "declared by the organisation"},
					{Source: "onboarding", Level: 2, Detail: "onboarding until 2026-02-01T00:00:00Z"},
				},
			},
			want: `ALLOW
From level:       3 (TRUSTED)
  declared:       4 (PRIVILEGED)  declared by the organisation
  passport:       3 (TRUSTED)     passport p1 from eu-assessors
To level:         2 (ATTESTED)
  declared:       4 (PRIVILEGED)  declared by the organisation
  onboarding:     2 (ATTESTED)    onboarding until 2026-02-01T00:00:00Z
Effective level:  2 (ATTESTED)
Required level:   2 (ATTESTED)
Agreement:        agr-0123456789abcdef
Raft index:       42
Consistency:      LINEARIZABLE
Answered by:      n1
Reasons:          -
`,
		},
		{
			name: "deny",
			resp: &trustfedv1.CheckInteractionResponse{
				Decision: trustfedv1.Decision_DECISION_DENY, FromLevel: 1, ToLevel: 4, EffectiveLevel: 1, RequiredLevel: 2,
				Reasons: []*trustfedv1.Reason{
					{Code: "NO_AGREEMENT", Message: "no active agreement"},
					{Code: "LEVEL_TOO_LOW", Message: "effective level 1 < required 2"},
				},
			},
			want: `DENY
From level:       1 (VERIFIED)
To level:         4 (PRIVILEGED)
Effective level:  1 (VERIFIED)
Required level:   2 (ATTESTED)
Agreement:        -
Reasons:
  NO_AGREEMENT   no active agreement
  LEVEL_TOO_LOW  effective level 1 < required 2
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			require.NoError(t, writeCheck(&buf, tt.resp))
			require.Equal(t, tt.want, buf.String())
		})
	}
}

func TestWriteStatus(t *testing.T) {
	resp := &trustfedv1.StatusResponse{
		NodeId: "n1", State: "Leader", Ready: true, CaughtUp: true, Term: 3, CommitIndex: 10, AppliedIndex: 9, LastLogIndex: 10,
		LastContact: durationpb.New(0), Version: "v1",
		Leader: &trustfedv1.ClusterMember{NodeId: "n1", ApiAddress: "127.0.0.1:7443"},
		Members: []*trustfedv1.ClusterMember{
			{NodeId: "n1", RaftAddress: "127.0.0.1:7000", ApiAddress: "127.0.0.1:7443", Voter: true, Leader: true,
				Suffrage: trustfedv1.Suffrage_SUFFRAGE_VOTER, CaughtUp: true},
			{NodeId: "n2", RaftAddress: "127.0.0.1:7001", Voter: true, Suffrage: trustfedv1.Suffrage_SUFFRAGE_VOTER},
			{NodeId: "n3", RaftAddress: "127.0.0.1:7002", ApiAddress: "127.0.0.1:7445", Suffrage: trustfedv1.Suffrage_SUFFRAGE_NONVOTER},
		},
	}
	var buf bytes.Buffer
	require.NoError(t, writeStatus(&buf, resp))
	require.Equal(t, `Node:            n1
State:           Leader
Ready:           yes (knows the leader, caught up with its log; GET /readyz answers 200)
Caught up:       yes
Leader:          n1 (127.0.0.1:7443)
Term:            3
Commit index:    10
Applied index:   9
Last log index:  10
Last contact:    0s
Version:         v1

NODE  RAFT ADDRESS    API ADDRESS     SUFFRAGE  CAUGHT UP  LEADER
n1    127.0.0.1:7000  127.0.0.1:7443  voter     yes        yes
n2    127.0.0.1:7001  -               voter     no         no
n3    127.0.0.1:7002  127.0.0.1:7445  nonvoter  no         no
`, buf.String())

	buf.Reset()
	require.NoError(t, writeStatus(&buf, &trustfedv1.StatusResponse{NodeId: "n3", State: "Candidate"}))
	require.Contains(t, buf.String(), "Leader:          -\n")

	// A node still catching up says so, and why it does not serve.
	resp.State, resp.Ready, resp.CaughtUp = "Follower", false, false
	resp.NotReady = "catching up with the leader's log (applied index 9, commit index 10)"
	buf.Reset()
	require.NoError(t, writeStatus(&buf, resp))
	require.Contains(t, buf.String(), "Ready:           no: catching up with the leader's log (applied index 9, commit index 10)\nCaught up:       no\n")

	// A healthy follower is ready.
	resp.State, resp.Ready, resp.CaughtUp, resp.NotReady = "Follower", true, true, ""
	buf.Reset()
	require.NoError(t, writeStatus(&buf, resp))
	require.Contains(t, buf.String(), "State:           Follower\nReady:           yes (knows the leader")
}

func TestWriteOrganizationsAndAgreements(t *testing.T) {
	created := timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	var buf bytes.Buffer
	require.NoError(t, writeOrganizations(&buf, []*trustfedv1.Organization{
		{Id: "acme", Name: "Acme\tCorp", DeclaredLevel: 3, Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, CreateTime: created, ModifyIndex: 7,
			Jurisdiction: "EU", Passport: &trustfedv1.Passport{Level: 3}},
		{Id: "globex", Name: "Globex", DeclaredLevel: 0, Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED, ModifyIndex: 12},
	}))
	require.Equal(t, `ID      NAME       DECLARED       STATUS   JURISDICTION  PASSPORT     CREATED               MODIFY INDEX
acme    Acme Corp  3 (TRUSTED)    ACTIVE   EU            3 (TRUSTED)  2026-01-02T03:04:05Z  7
globex  Globex     0 (UNTRUSTED)  REVOKED  -             -            -                     12
`, buf.String())

	buf.Reset()
	terms := &trustfedv1.AgreementTerms{
		Scope:    &trustfedv1.AgreementScope{AllowedActions: []string{"task_send", "ping"}},
		NotAfter: timestamppb.New(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
	require.NoError(t, writeAgreements(&buf, []*trustfedv1.Agreement{
		{Id: "agr-1", OrganizationAId: "acme", OrganizationBId: "globex", Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, CreateTime: created, ModifyIndex: 9, ParsedTerms: terms},
	}))
	require.Equal(t, `ID     ORG A  ORG B   STATUS  ACTIONS         VALID UNTIL           CREATED               MODIFY INDEX
agr-1  acme   globex  ACTIVE  task_send,ping  2027-01-01T00:00:00Z  2026-01-02T03:04:05Z  9
`, buf.String())

	buf.Reset()
	require.NoError(t, writeOrganization(&buf, &trustfedv1.Organization{Id: "acme", Name: "Acme", DeclaredLevel: 4},
		&trustfedv1.ReadMeta{Index: 5, Consistency: trustfedv1.Consistency_CONSISTENCY_STALE}))
	out := buf.String()
	require.Contains(t, out, "Declared level:       4 (PRIVILEGED)\n")
	require.Contains(t, out, "Passport:             -\n")
	require.Contains(t, out, "Raft index:           5\n")
	require.Contains(t, out, "Consistency:          STALE\n")
	require.Contains(t, out, "Answered by:          -\n")
}

func TestWriteOrganizationDetail(t *testing.T) {
	at := func(month time.Month) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, month, 1, 0, 0, 0, 0, time.UTC))
	}
	var buf bytes.Buffer
	require.NoError(t, writeOrganization(&buf, &trustfedv1.Organization{
		Id: "acme", Name: "Acme", DeclaredLevel: 3, Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE,
		Jurisdiction: "EU", PublicKeyFingerprint: "SHA256:abc",
		Passport:              &trustfedv1.Passport{Serial: "p-2", IssuerId: "eu-assessors", Level: 3, NotBefore: at(1), ExpireTime: at(12)},
		PassportHistory:       []string{"p-1"},
		NotificationEndpoints: []string{"https://a.example/n", "https://b.example/n"},
		ApproveTime:           at(2), OnboardingUntil: at(3),
		OnboardingOverride: &trustfedv1.OnboardingOverride{Reason: "known partner", Principal: "admin-1", Time: at(2)},
		CreateTime:         at(1), UpdateTime: at(2), CreateIndex: 4, ModifyIndex: 9,
	}, nil))
	require.Equal(t, `ID:                   acme
Name:                 Acme
Status:               ACTIVE
Jurisdiction:         EU
Declared level:       3 (TRUSTED)
Key fingerprint:      SHA256:abc
Passport:             p-2
  issuer:             eu-assessors
  level:              3 (TRUSTED)
  valid:              2026-01-01T00:00:00Z to 2026-12-01T00:00:00Z
Passport history:     p-1
Endpoints:            https://a.example/n, https://b.example/n
Approved:             2026-02-01T00:00:00Z
Onboarding until:     2026-03-01T00:00:00Z
Onboarding override:  known partner (by admin-1 at 2026-02-01T00:00:00Z)
Created:              2026-01-01T00:00:00Z
Updated:              2026-02-01T00:00:00Z
Create index:         4
Modify index:         9
`, buf.String())
}

func TestWriteAgreement(t *testing.T) {
	at := func(month time.Month) *timestamppb.Timestamp {
		return timestamppb.New(time.Date(2026, month, 1, 0, 0, 0, 0, time.UTC))
	}
	ag := &trustfedv1.Agreement{
		Id: "agr-0123456789abcdef", OrganizationAId: "acme", OrganizationBId: "globex",
		Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED,
		ParsedTerms: &trustfedv1.AgreementTerms{
			AgreementId: "agr-0123456789abcdef", OrganizationAId: "acme", OrganizationBId: "globex",
			Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"task_send", "ping"}, DataCategories: []string{"payments"}},
			NotBefore: at(1), NotAfter: at(12),
			Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, MinLevel: 2, OnPassportExpiry: true},
		},
		SignatureA: []byte{1}, SignATime: at(2),
		TerminateTime: at(4), TerminatedBy: "globex", TerminationReason: "project ended",
		CreateTime: at(1), UpdateTime: at(4), CreateIndex: 7, ModifyIndex: 12,
	}
	var buf bytes.Buffer
	require.NoError(t, writeAgreement(&buf, ag, nil))
	require.Equal(t, `ID:                  agr-0123456789abcdef
Organisation A:      acme
Organisation B:      globex
Status:              TERMINATED
Actions:             task_send, ping
Data categories:     payments
Valid from:          2026-01-01T00:00:00Z
Valid until:         2026-12-01T00:00:00Z
Ends on:             party revoked or suspended; passport expiry; level below 2 (ATTESTED); end date; termination by a party
Signed by acme:      2026-02-01T00:00:00Z
Signed by globex:    not yet
Terminated:          2026-04-01T00:00:00Z by globex
Termination reason:  project ended
Created:             2026-01-01T00:00:00Z
Updated:             2026-04-01T00:00:00Z
Create index:        7
Modify index:        12
`, buf.String())

	require.Equal(t, "agr-0123456789abcdef between acme and globex: actions task_send,ping; data payments; "+
		"valid 2026-01-01T00:00:00Z to 2026-12-01T00:00:00Z; ends on: party revoked or suspended; "+
		"passport expiry; level below 2 (ATTESTED); end date; termination by a party",
		summarizeTerms(ag.GetParsedTerms()))

	buf.Reset()
	require.NoError(t, writeAgreement(&buf, &trustfedv1.Agreement{Id: "agr-1"}, nil))
	require.NotContains(t, buf.String(), "Terminated:", "only terminated agreements show a termination")
}

func TestWriteJSON(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, writeJSON(&buf, &trustfedv1.GetOrganizationResponse{
		Organization: &trustfedv1.Organization{Id: "acme", DeclaredLevel: 2},
	}))
	require.True(t, strings.Count(buf.String(), "\n") > 1, "multi-line")
	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	org := got["organization"].(map[string]any)
	require.Equal(t, "acme", org["id"])
	require.Equal(t, float64(2), org["declaredLevel"])
	require.Equal(t, []any{}, org["notificationEndpoints"], "empty lists are kept, as REST writes them")
	require.Contains(t, got, "meta", "unset messages are written as null")
	require.Nil(t, got["meta"])
}
