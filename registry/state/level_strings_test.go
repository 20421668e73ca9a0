package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// levelWithFmt is OrganizationLevel as it was written with fmt (before the
// details were concatenated): the audit log records the details, so they
// must not change by a byte.
func (r *Reader) levelWithFmt(o *trustfedv1.Organization, now time.Time) Level {
	l := Level{Level: o.GetDeclaredLevel()}
	l.Caps = append(l.Caps, &trustfedv1.LevelCap{Source: CapDeclared, Level: o.GetDeclaredLevel(), Detail: "declared by the organisation"})
	attested, detail := r.attestedWithFmt(o, now)
	l.Caps = append(l.Caps, &trustfedv1.LevelCap{Source: CapPassport, Level: attested, Detail: detail})
	l.Level = min(l.Level, attested)
	if until := o.GetOnboardingUntil(); until != nil && now.Before(until.AsTime()) {
		if ov := o.GetOnboardingOverride(); ov != nil {
			l.Caps = append(l.Caps, &trustfedv1.LevelCap{Source: CapOnboarding, Level: MaxLevel,
				Detail: fmt.Sprintf("onboarding cap lifted by %s at %s: %s", ov.Principal, ov.Time.AsTime().UTC().Format(time.RFC3339), ov.Reason)})
		} else {
			cap := r.FederationPolicy().GetOnboardingCapLevel()
			l.Caps = append(l.Caps, &trustfedv1.LevelCap{Source: CapOnboarding, Level: cap,
				Detail: fmt.Sprintf("onboarding until %s", until.AsTime().UTC().Format(time.RFC3339))})
			l.Level = min(l.Level, cap)
		}
	}
	return l
}

func (r *Reader) attestedWithFmt(o *trustfedv1.Organization, now time.Time) (uint32, string) {
	p := o.GetPassport()
	if p == nil {
		return 0, "no passport"
	}
	iss, ok := r.Issuer(p.IssuerId)
	switch {
	case !ok:
		return 0, fmt.Sprintf("passport %s: issuer %q unknown", p.Serial, p.IssuerId)
	case iss.Status != trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED:
		return 0, fmt.Sprintf("passport %s: issuer %q accreditation withdrawn", p.Serial, p.IssuerId)
	case r.PassportRevoked(p.Serial):
		return 0, fmt.Sprintf("passport %s revoked", p.Serial)
	case now.Before(p.GetNotBefore().AsTime()):
		return 0, fmt.Sprintf("passport %s not valid before %s", p.Serial, p.GetNotBefore().AsTime().UTC().Format(time.RFC3339))
	case !now.Before(p.GetExpireTime().AsTime()):
		return 0, fmt.Sprintf("passport %s expired at %s", p.Serial, p.GetExpireTime().AsTime().UTC().Format(time.RFC3339))
	}
	level := min(p.Level, iss.MaxLevel)
	return level, fmt.Sprintf("passport %s from %s, valid until %s", p.Serial, p.IssuerId, p.GetExpireTime().AsTime().UTC().Format(time.RFC3339))
}

// TestOrganizationLevelDetails: every branch of OrganizationLevel gives
// the level and the details it gave when they were written with fmt,
// including ids that %q escapes.
func TestOrganizationLevelDetails(t *testing.T) {
	s := NewStore()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(d)) }
	tx := s.db.Load().Txn(true)
	mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "acme", Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED, MaxLevel: 3}))
	mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "gone", Status: trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN, MaxLevel: 4}))
	mustDo(tx.Insert(tableRevoked, &commandv1.RevokedPassport{Serial: "p-revoked"}))
	tx.Commit()
	r := s.Read()
	pp := func(issuer, serial string, nb, exp time.Duration) *trustfedv1.Passport {
		return &trustfedv1.Passport{IssuerId: issuer, Serial: serial, Level: 4, NotBefore: ts(nb), ExpireTime: ts(exp)}
	}
	base := &trustfedv1.Organization{Id: "org-a", DeclaredLevel: 4}
	cases := []*trustfedv1.Passport{
		nil,
		pp("acme", "p-1", -time.Hour, time.Hour),
		pp("nobody", "p-2", -time.Hour, time.Hour),
		pp("we\"ird\x00\u00e9\u2028", "p-3", -time.Hour, time.Hour),
		pp("gone", "p-4", -time.Hour, time.Hour),
		pp("acme", "p-revoked", -time.Hour, time.Hour),
		pp("acme", "p-5", time.Hour, 2*time.Hour),
		pp("acme", "p-6", -2*time.Hour, -time.Hour),
		pp("acme", "p-7", -2*time.Hour, 0),
		{IssuerId: "acme", Serial: "p-8"},
	}
	n := 0
	for _, p := range cases {
		for _, onboarding := range []*timestamppb.Timestamp{nil, ts(time.Hour), ts(-time.Hour)} {
			for _, ov := range []*trustfedv1.OnboardingOverride{nil, {Reason: "trusted: \"yes\"", Principal: "admins alice, bob (change chg-1)", Time: ts(-time.Minute)}} {
				o := proto.CloneOf(base)
				o.Passport, o.OnboardingUntil, o.OnboardingOverride = p, onboarding, ov
				want, got := r.levelWithFmt(o, now), r.OrganizationLevel(o, now)
				require.Equal(t, want.Level, got.Level)
				require.Len(t, got.Caps, len(want.Caps))
				for i := range want.Caps {
					require.True(t, proto.Equal(want.Caps[i], got.Caps[i]), "case %d cap %d: want %v, got %v", n, i, want.Caps[i], got.Caps[i])
				}
				n++
			}
		}
	}
}

func BenchmarkOrganizationLevel(b *testing.B) {
	s := NewStore()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	tx := s.db.Load().Txn(true)
	mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "acme", Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED, MaxLevel: 3}))
	tx.Commit()
	r := s.Read()
	o := &trustfedv1.Organization{Id: "org-a", DeclaredLevel: 4, Passport: &trustfedv1.Passport{IssuerId: "acme", Serial: "p-1", Level: 4,
		NotBefore: timestamppb.New(now.Add(-time.Hour)), ExpireTime: timestamppb.New(now.Add(time.Hour))}}
	b.Run("concatenated", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = r.OrganizationLevel(o, now)
		}
	})
	b.Run("fmt", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = r.levelWithFmt(o, now)
		}
	})
}
