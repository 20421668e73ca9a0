package state

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// agreementEndedBefore is AgreementEnded as it was written before the
// parties' levels were derived without their caps' details (reading both
// parties, their passports and levels with OrganizationLevel as it was
// written with fmt, levelWithFmt): the reasons are answered and logged, so
// they must not change by a byte.
func (r *Reader) agreementEndedBefore(ag *trustfedv1.Agreement, now time.Time) (string, bool) {
	switch ag.GetStatus() {
	case trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING:
		return fmt.Sprintf("agreement %s is not signed by both parties", ag.Id), true
	case trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED:
		return fmt.Sprintf("agreement %s was terminated by %s: %s", ag.Id, ag.TerminatedBy, ag.TerminationReason), true
	}
	terms := ag.GetParsedTerms()
	if nb := terms.GetNotBefore(); nb != nil && now.Before(nb.AsTime()) {
		return fmt.Sprintf("agreement %s starts at %s", ag.Id, nb.AsTime().UTC().Format(time.RFC3339)), true
	}
	if na := terms.GetNotAfter(); na != nil && !now.Before(na.AsTime()) {
		return fmt.Sprintf("agreement %s ended at %s (end date)", ag.Id, na.AsTime().UTC().Format(time.RFC3339)), true
	}
	for _, orgID := range []string{ag.OrganizationAId, ag.OrganizationBId} {
		o, ok := r.Organization(orgID)
		if !ok {
			return fmt.Sprintf("agreement %s: %s", ag.Id, fmt.Sprintf("party %q no longer exists", orgID)), true
		}
		reason := ""
		switch o.Status {
		case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED:
			reason = fmt.Sprintf("party %q is suspended", orgID)
		case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED:
			reason = fmt.Sprintf("party %q is revoked", orgID)
		}
		cond := terms.GetTermination()
		if reason == "" && cond.GetOnPassportExpiry() {
			if attested, detail := r.attestedWithFmt(o, now); attested == 0 && o.GetPassport() != nil {
				reason = fmt.Sprintf("party %q passport no longer counts (%s)", orgID, detail)
			}
		}
		if min := cond.GetMinLevel(); reason == "" && min > 0 {
			if l := r.levelWithFmt(o, now); l.Level < min {
				reason = fmt.Sprintf("party %q level %d is below the agreed minimum %d", orgID, l.Level, min)
			}
		}
		if reason != "" {
			return fmt.Sprintf("agreement %s: %s", ag.Id, reason), true
		}
	}
	return "", false
}

// TestAgreementEndedFor: on the same states, AgreementEndedFor with the
// parties Evaluate reads (both, one, in either order, none) gives what
// AgreementEnded gives, and both give what AgreementEnded gave before
// (agreementEndedBefore), byte for byte: parties whose passports expired,
// are not yet valid, revoked, from an unknown or withdrawn issuer, or
// missing; suspended and revoked parties; levels below the agreement's
// minimum by declaration, passport or onboarding cap; a missing party;
// pending, terminated, not yet started and ended agreements.
func TestAgreementEndedFor(t *testing.T) {
	r, now, orgs := partiesState()
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	// Every organisation against a few partners (and one that does not
	// exist), under terms with and without each condition.
	partners := []string{orgs[0], orgs[3], orgs[len(orgs)/2], orgs[len(orgs)-1], "org-missing"}
	var termsCases []*trustfedv1.AgreementTerms
	for _, onExpiry := range []bool{false, true} {
		for _, minLevel := range []uint32{0, 1, 2, 3, 4} {
			termsCases = append(termsCases, &trustfedv1.AgreementTerms{NotBefore: ts(-time.Hour), NotAfter: ts(time.Hour),
				Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, OnPassportExpiry: onExpiry, MinLevel: minLevel}})
		}
	}
	termsCases = append(termsCases,
		&trustfedv1.AgreementTerms{NotBefore: ts(time.Minute), NotAfter: ts(time.Hour)},
		&trustfedv1.AgreementTerms{NotBefore: ts(-time.Hour), NotAfter: ts(0)},
		&trustfedv1.AgreementTerms{})
	statusesAg := []trustfedv1.AgreementStatus{
		trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE,
		trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING,
		trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED,
	}
	party := func(id string) Party {
		o, ok := r.Organization(id)
		if !ok {
			return Party{}
		}
		return Party{Org: o, Level: r.OrganizationLevel(o, now)}
	}
	n, ended := 0, 0
	kinds := map[string]int{"is suspended": 0, "is revoked": 0, "no longer exists": 0, "not signed": 0, "terminated by": 0,
		"starts at": 0, "(end date)": 0, "below the agreed minimum": 0,
		"unknown)": 0, "accreditation withdrawn)": 0, "revoked)": 0, "not valid before": 0, "expired at": 0}
	for _, a := range orgs {
		for _, b := range partners {
			if a == b {
				continue
			}
			pa, pb := party(a), party(b)
			// Both levels as Evaluate computes them.
			la, lb := r.OrganizationLevels(pa.Org, pb.Org, now)
			if pb.Org == nil {
				la = r.OrganizationLevel(pa.Org, now)
			}
			for _, terms := range termsCases {
				for _, st := range statusesAg {
					ag := &trustfedv1.Agreement{Id: "agr-0000000000000001", OrganizationAId: a, OrganizationBId: b, Status: st, ParsedTerms: terms,
						TerminatedBy: "org-x", TerminationReason: "done"}
					want, wantEnded := r.agreementEndedBefore(ag, now)
					got, gotEnded := r.AgreementEnded(ag, now)
					require.Equal(t, want, got, "AgreementEnded %s-%s %v", a, b, terms)
					require.Equal(t, wantEnded, gotEnded)
					for name, ps := range map[string][2]Party{
						"both":        {pa, pb},
						"swapped":     {pb, pa},
						"first only":  {pa, {}},
						"second only": {{}, pb},
						"none":        {},
						"as Evaluate": {{Org: pa.Org, Level: la}, {Org: pb.Org, Level: lb}},
						"no levels":   {{Org: pa.Org}, {Org: pb.Org}},
					} {
						got, gotEnded := r.AgreementEndedFor(ag, now, ps[0], ps[1])
						require.Equal(t, want, got, "AgreementEndedFor (%s) %s-%s %v", name, a, b, terms)
						require.Equal(t, wantEnded, gotEnded)
					}
					n++
					if wantEnded {
						ended++
						for k := range kinds {
							if strings.Contains(want, k) {
								kinds[k]++
							}
						}
					}
				}
			}
		}
	}
	for k, c := range kinds {
		require.NotZero(t, c, "no agreement ended with %q", k)
	}
	require.Less(t, ended, n, "some agreements hold")
	t.Logf("%d cases, %d ended", n, ended)
}

// partiesState is a state of organisations in every standing that counts
// for a level or an agreement's conditions, all combined: status, passport
// (none, valid, from an issuer whose maximum is lower, an unknown or
// withdrawn issuer, revoked, not yet valid, expired, expiring now),
// onboarding (none, capped, over, lifted) and declared level.
func partiesState() (r *Reader, now time.Time, orgs []string) {
	s := NewStore()
	now = time.Date(2026, 11, 23, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	tx := s.db.Load().Txn(true)
	mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "acme", Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED, MaxLevel: 4}))
	mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "small", Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED, MaxLevel: 1}))
	mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "gone", Status: trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN, MaxLevel: 4}))
	mustDo(tx.Insert(tableRevoked, &commandv1.RevokedPassport{Serial: "p-revoked"}))
	mustDo(tx.Insert(tablePolicy, &trustfedv1.FederationPolicy{OnboardingCapLevel: 2}))
	pp := func(issuer, serial string, nb, exp time.Duration) *trustfedv1.Passport {
		return &trustfedv1.Passport{IssuerId: issuer, Serial: serial, Level: 3, NotBefore: ts(nb), ExpireTime: ts(exp)}
	}
	passports := []*trustfedv1.Passport{
		nil,
		pp("acme", "p-valid", -time.Hour, time.Hour),
		pp("small", "p-small", -time.Hour, time.Hour),
		pp("nobody", "p-unknown", -time.Hour, time.Hour),
		pp("we\"ird\u2028", "p-weird", -time.Hour, time.Hour),
		pp("gone", "p-withdrawn", -time.Hour, time.Hour),
		pp("acme", "p-revoked", -time.Hour, time.Hour),
		pp("acme", "p-later", time.Hour, 2*time.Hour),
		pp("acme", "p-expired", -2*time.Hour, -time.Hour),
		pp("acme", "p-now", -2*time.Hour, 0),
	}
	statuses := []trustfedv1.OrganizationStatus{
		trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE,
		trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED,
		trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED,
	}
	type onboarding struct {
		until *timestamppb.Timestamp
		ov    *trustfedv1.OnboardingOverride
	}
	onboardings := []onboarding{{}, {until: ts(time.Hour)}, {until: ts(-time.Hour)},
		{until: ts(time.Hour), ov: &trustfedv1.OnboardingOverride{Reason: "assessed", Principal: "admins alice", Time: ts(-time.Minute)}}}
	for si, st := range statuses {
		for pi, p := range passports {
			for oi, ob := range onboardings {
				for _, declared := range []uint32{1, 4} {
					id := fmt.Sprintf("org-%d-%d-%d-%d", si, pi, oi, declared)
					mustDo(tx.Insert(tableOrganizations, &trustfedv1.Organization{Id: id, Name: id, Status: st, DeclaredLevel: declared,
						Passport: p, OnboardingUntil: ob.until, OnboardingOverride: ob.ov}))
					orgs = append(orgs, id)
				}
			}
		}
	}
	tx.Commit()
	return s.Read(), now, orgs
}

// TestOrganizationLevels: the levels of two parties computed together
// (sharing the rows they read and one allocation for their caps) are each
// OrganizationLevel as it was written with fmt (levelWithFmt), byte for
// byte, whether the parties share their passport's issuer or not.
func TestOrganizationLevels(t *testing.T) {
	r, now, orgs := partiesState()
	partners := []string{orgs[0], orgs[5], orgs[len(orgs)/3], orgs[len(orgs)/2], orgs[len(orgs)-1]}
	equal := func(want, got Level, what string) {
		t.Helper()
		require.Equal(t, want.Level, got.Level, what)
		require.Len(t, got.Caps, len(want.Caps), what)
		for i := range want.Caps {
			require.True(t, proto.Equal(want.Caps[i], got.Caps[i]), "%s cap %d: want %v, got %v", what, i, want.Caps[i], got.Caps[i])
		}
	}
	for _, a := range orgs {
		oa, _ := r.Organization(a)
		for _, b := range append(partners, a) {
			ob, _ := r.Organization(b)
			la, lb := r.OrganizationLevels(oa, ob, now)
			equal(r.levelWithFmt(oa, now), la, a+" (with "+b+")")
			equal(r.levelWithFmt(ob, now), lb, b+" (with "+a+")")
			equal(r.levelWithFmt(oa, now), r.OrganizationLevel(oa, now), a)
		}
	}
}
