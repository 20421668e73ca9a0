package state

import (
	"fmt"
	"strconv"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Sources of a level cap.
const (
	CapDeclared   = "declared"
	CapPassport   = "passport"
	CapOnboarding = "onboarding"
)

// Level is an organisation's level at a time and every bound that applied.
type Level struct {
	Level uint32
	Caps  []*trustfedv1.LevelCap

	// facts are what Level and Caps were derived from (set by
	// OrganizationLevel; AgreementEndedFor reuses them).
	facts levelFacts
}

// OrganizationLevel computes level(org) at now (AG-783 R1, TC6, TC7):
// min(declared, attested by a currently valid passport, onboarding cap while
// onboarding). A missing, expired, not-yet-valid or revoked passport, or one
// from an issuer no longer accredited, attests 0; an issuer's passport
// counts only up to the issuer's max level. Pure: it reads the view and now.
func (r *Reader) OrganizationLevel(o *trustfedv1.Organization, now time.Time) Level {
	l, _ := r.levels(now, o, nil)
	return l
}

// OrganizationLevels is OrganizationLevel of a and of b, the two parties of
// a check: the rows both levels read (their passports' issuer when it is
// the same, the federation policy) are read once, and the caps of both are
// built with two allocations (one for the caps, one for their details).
func (r *Reader) OrganizationLevels(a, b *trustfedv1.Organization, now time.Time) (Level, Level) {
	return r.levels(now, a, b)
}

// levelFacts is what OrganizationLevel derives about an organisation at a
// time before its caps' details are formatted: the details are needed only
// where caps are answered or logged, not where only the level counts
// (an agreement's min_level, the sweeper).
type levelFacts struct {
	known         bool // computed (levelFactsOf)
	level         uint32
	attested      uint32
	passport      passportStanding
	onboarding    onboardingStanding
	onboardingCap uint32 // the onboarding cap's level: the policy's, MaxLevel when lifted
}

// passportStanding is why a passport attests what it does.
type passportStanding uint8

const (
	noPassport passportStanding = iota
	passportIssuerUnknown
	passportIssuerWithdrawn
	passportRevoked
	passportNotYetValid
	passportExpired
	passportValid
)

// onboardingStanding is whether an onboarding cap applies.
type onboardingStanding uint8

const (
	notOnboarding onboardingStanding = iota
	onboardingLifted
	onboardingCapped
)

// levelReads holds rows the levels of one evaluation read, so that each is
// read once: the issuer of the passport last looked at, the federation
// policy. nil reads every time.
type levelReads struct {
	issuerRead bool
	issuerID   string
	issuer     *trustfedv1.Issuer
	issuerOK   bool
	policy     *trustfedv1.FederationPolicy
}

func (r *Reader) issuerOf(id string, m *levelReads) (*trustfedv1.Issuer, bool) {
	if m == nil {
		return r.Issuer(id)
	}
	if !m.issuerRead || m.issuerID != id {
		m.issuer, m.issuerOK = r.Issuer(id)
		m.issuerID, m.issuerRead = id, true
	}
	return m.issuer, m.issuerOK
}

func (r *Reader) onboardingCapLevel(m *levelReads) uint32 {
	if m == nil {
		return r.FederationPolicy().GetOnboardingCapLevel()
	}
	if m.policy == nil {
		m.policy = r.FederationPolicy()
	}
	return m.policy.GetOnboardingCapLevel()
}

// levelFactsOf is OrganizationLevel without the caps.
func (r *Reader) levelFactsOf(o *trustfedv1.Organization, now time.Time, m *levelReads) levelFacts {
	f := levelFacts{known: true, level: o.GetDeclaredLevel()}
	f.attested, f.passport = r.attestedLevel(o, now, m)
	f.level = min(f.level, f.attested)
	if until := o.GetOnboardingUntil(); until != nil && now.Before(until.AsTime()) {
		if o.GetOnboardingOverride() != nil {
			f.onboarding, f.onboardingCap = onboardingLifted, MaxLevel
		} else {
			f.onboarding, f.onboardingCap = onboardingCapped, r.onboardingCapLevel(m)
			f.level = min(f.level, f.onboardingCap)
		}
	}
	return f
}

// attestedLevel is the level o's passport attests at now, and why.
func (r *Reader) attestedLevel(o *trustfedv1.Organization, now time.Time, m *levelReads) (uint32, passportStanding) {
	p := o.GetPassport()
	if p == nil {
		return 0, noPassport
	}
	iss, ok := r.issuerOf(p.IssuerId, m)
	switch {
	case !ok:
		return 0, passportIssuerUnknown
	case iss.Status != trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED:
		return 0, passportIssuerWithdrawn
	case r.PassportRevoked(p.Serial):
		return 0, passportRevoked
	case now.Before(p.GetNotBefore().AsTime()):
		return 0, passportNotYetValid
	case !now.Before(p.GetExpireTime().AsTime()): // time-driven: the sweeper's T3 (sweep.go)
		return 0, passportExpired
	}
	return min(p.Level, iss.MaxLevel), passportValid
}

// The details are appended rather than formatted (fmt), all of a check's
// into one buffer made a string once: this runs for both parties of every
// check and twice for each organisation an audited command changes; the
// audit log records the same bytes (TestOrganizationLevelDetails).

const declaredDetail = "declared by the organisation"

// appendPassportDetail appends the passport cap's detail for p standing s
// (not noPassport: its detail is a constant).
func appendPassportDetail(b []byte, p *trustfedv1.Passport, s passportStanding) []byte {
	b = append(b, "passport "...)
	b = append(b, p.Serial...)
	switch s {
	case passportIssuerUnknown:
		b = append(b, ": issuer "...)
		b = strconv.AppendQuote(b, p.IssuerId)
		return append(b, " unknown"...)
	case passportIssuerWithdrawn:
		b = append(b, ": issuer "...)
		b = strconv.AppendQuote(b, p.IssuerId)
		return append(b, " accreditation withdrawn"...)
	case passportRevoked:
		return append(b, " revoked"...)
	case passportNotYetValid:
		b = append(b, " not valid before "...)
		return appendRFC3339(b, p.GetNotBefore())
	case passportExpired:
		b = append(b, " expired at "...)
		return appendRFC3339(b, p.GetExpireTime())
	}
	b = append(b, " from "...)
	b = append(b, p.IssuerId...)
	b = append(b, ", valid until "...)
	return appendRFC3339(b, p.GetExpireTime())
}

// passportDetail is the passport cap's detail of o standing s.
func passportDetail(o *trustfedv1.Organization, s passportStanding) string {
	if s == noPassport {
		return "no passport"
	}
	return string(appendPassportDetail(nil, o.GetPassport(), s))
}

// appendOnboardingDetail appends the onboarding cap's detail of o standing
// s (not notOnboarding).
func appendOnboardingDetail(b []byte, o *trustfedv1.Organization, s onboardingStanding) []byte {
	if s == onboardingLifted {
		ov := o.GetOnboardingOverride()
		b = append(b, "onboarding cap lifted by "...)
		b = append(b, ov.Principal...)
		b = append(b, " at "...)
		b = appendRFC3339(b, ov.Time)
		b = append(b, ": "...)
		return append(b, ov.Reason...)
	}
	b = append(b, "onboarding until "...)
	return appendRFC3339(b, o.GetOnboardingUntil())
}

// appendRFC3339 appends t in UTC as RFC 3339 (seconds).
func appendRFC3339(b []byte, t *timestamppb.Timestamp) []byte {
	return t.AsTime().UTC().AppendFormat(b, time.RFC3339)
}

// levels is OrganizationLevel of a and, when not nil, of b, reading the
// rows both need once (levelReads); lb is the zero Level when b is nil.
func (r *Reader) levels(now time.Time, a, b *trustfedv1.Organization) (la, lb Level) {
	orgs := [2]*trustfedv1.Organization{a, b}
	n := 1
	if b != nil {
		n = 2
	}
	var (
		m     levelReads
		facts [2]levelFacts
		// starts[i] and ends[i] delimit, in buf, org i's passport and
		// onboarding details (an empty span: a constant detail, or none).
		starts, ends [2][2]int
		stack        [256]byte
	)
	buf := stack[:0]
	for i, o := range orgs[:n] {
		f := r.levelFactsOf(o, now, &m)
		facts[i] = f
		starts[i][0] = len(buf)
		if f.passport != noPassport {
			buf = appendPassportDetail(buf, o.GetPassport(), f.passport)
		}
		ends[i][0], starts[i][1] = len(buf), len(buf)
		if f.onboarding != notOnboarding {
			buf = appendOnboardingDetail(buf, o, f.onboarding)
		}
		ends[i][1] = len(buf)
	}
	details := string(buf)
	// Room for two caps per level, three when one is onboarding.
	stride := 2
	for _, f := range facts[:n] {
		if f.onboarding != notOnboarding {
			stride = 3
		}
	}
	ptrs, caps := newCaps(n * stride)
	var out [2]Level
	for i, o := range orgs[:n] {
		f := facts[i]
		p, c := ptrs[stride*i:stride*(i+1)], caps[stride*i:stride*(i+1)]
		c[0].Source, c[0].Level, c[0].Detail = CapDeclared, o.GetDeclaredLevel(), declaredDetail
		c[1].Source, c[1].Level, c[1].Detail = CapPassport, f.attested, details[starts[i][0]:ends[i][0]]
		if f.passport == noPassport {
			c[1].Detail = "no passport"
		}
		p[0], p[1] = &c[0], &c[1]
		k := 2
		if f.onboarding != notOnboarding {
			c[2].Source, c[2].Level, c[2].Detail = CapOnboarding, f.onboardingCap, details[starts[i][1]:ends[i][1]]
			p[2], k = &c[2], 3
		}
		out[i] = Level{Level: f.level, Caps: p[:k:k], facts: f}
	}
	return out[0], out[1]
}

// newCaps is the room for n (2 to 6) caps and their pointers, in one
// allocation: for one level (up to 3 caps) or two (up to 6).
func newCaps(n int) ([]*trustfedv1.LevelCap, []trustfedv1.LevelCap) {
	if n <= 3 {
		blk := new(struct {
			ptrs [3]*trustfedv1.LevelCap
			caps [3]trustfedv1.LevelCap
		})
		return blk.ptrs[:n], blk.caps[:n]
	}
	blk := new(struct {
		ptrs [6]*trustfedv1.LevelCap
		caps [6]trustfedv1.LevelCap
	})
	return blk.ptrs[:n], blk.caps[:n]
}

// AgreementEnded evaluates an agreement's termination conditions and
// validity window at now. It returns a reason when the agreement does not
// hold (terminated, pending, outside its window, or a condition met).
func (r *Reader) AgreementEnded(ag *trustfedv1.Agreement, now time.Time) (reason string, ended bool) {
	return r.agreementEnded(ag, now, r.partyBreaksTerms)
}

// Party is a party of an agreement as a caller already read it from the
// same view: its row and its OrganizationLevel at the time the agreement
// is evaluated.
type Party struct {
	Org   *trustfedv1.Organization
	Level Level
}

// AgreementEndedFor is AgreementEnded for a caller that already read the
// agreement's parties (Evaluate reads both parties of a check and their
// levels): a party given among a and b is not read again nor its level
// recomputed. a and b must come from r (Organization) and their levels be
// OrganizationLevel at now: it then gives what AgreementEnded gives. A
// party of ag not given (or given without a level from OrganizationLevel)
// is read as AgreementEnded reads it.
func (r *Reader) AgreementEndedFor(ag *trustfedv1.Agreement, now time.Time, a, b Party) (reason string, ended bool) {
	return r.agreementEnded(ag, now, func(orgID string, terms *trustfedv1.AgreementTerms, now time.Time) (string, bool) {
		for _, p := range [2]*Party{&a, &b} {
			if p.Org != nil && p.Level.facts.known && p.Org.Id == orgID {
				return r.partyBreaks(orgID, p.Org, &p.Level.facts, terms, now)
			}
		}
		return r.partyBreaksTerms(orgID, terms, now)
	})
}

// partyCheck is partyBreaksTerms or a memo of it (partyMemo).
type partyCheck func(orgID string, terms *trustfedv1.AgreementTerms, now time.Time) (string, bool)

func (r *Reader) agreementEnded(ag *trustfedv1.Agreement, now time.Time, partyBreaks partyCheck) (reason string, ended bool) {
	switch ag.GetStatus() {
	case trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING:
		return fmt.Sprintf("agreement %s is not signed by both parties", ag.Id), true
	case trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED:
		return fmt.Sprintf("agreement %s was terminated by %s: %s", ag.Id, ag.TerminatedBy, ag.TerminationReason), true
	}
	// The conditions time alone changes are listed in sweep.go (T1-T3),
	// with the indexes the sweeper finds them by; a change to this test
	// must keep that list whole (TestSweepDueSinceMatchesFullScan).
	terms := ag.GetParsedTerms()
	if nb := terms.GetNotBefore(); nb != nil && now.Before(nb.AsTime()) {
		return fmt.Sprintf("agreement %s starts at %s", ag.Id, nb.AsTime().UTC().Format(time.RFC3339)), true
	}
	if na := terms.GetNotAfter(); na != nil && !now.Before(na.AsTime()) { // time-driven: T1
		return fmt.Sprintf("agreement %s ended at %s (end date)", ag.Id, na.AsTime().UTC().Format(time.RFC3339)), true
	}
	for _, id := range [2]string{ag.OrganizationAId, ag.OrganizationBId} {
		if reason, ended := partyBreaks(id, terms, now); ended {
			return fmt.Sprintf("agreement %s: %s", ag.Id, reason), true
		}
	}
	return "", false
}

// partyBreaksTerms checks the conditions of terms that concern one party.
func (r *Reader) partyBreaksTerms(orgID string, terms *trustfedv1.AgreementTerms, now time.Time) (string, bool) {
	o, ok := r.Organization(orgID)
	if !ok {
		return fmt.Sprintf("party %q no longer exists", orgID), true
	}
	return r.partyBreaks(orgID, o, nil, terms, now)
}

// partyBreaks is partyBreaksTerms for the party orgID, read as o; f, when
// not nil, is o's levelFacts at now (else they are computed when a
// condition needs them, once). Only the level and the passport's standing
// count here: the caps' details are not formatted, but for a passport that
// no longer counts, whose detail is the reason.
func (r *Reader) partyBreaks(orgID string, o *trustfedv1.Organization, f *levelFacts, terms *trustfedv1.AgreementTerms, now time.Time) (string, bool) {
	switch o.Status {
	case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED:
		return fmt.Sprintf("party %q is suspended", orgID), true
	case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED:
		return fmt.Sprintf("party %q is revoked", orgID), true
	}
	cond := terms.GetTermination()
	onExpiry, minLevel := cond.GetOnPassportExpiry(), cond.GetMinLevel()
	if !onExpiry && minLevel == 0 {
		return "", false
	}
	if f == nil {
		var facts levelFacts
		if minLevel > 0 {
			facts = r.levelFactsOf(o, now, nil)
		} else { // the passport alone: the onboarding cap is not read
			facts.attested, facts.passport = r.attestedLevel(o, now, nil)
		}
		f = &facts
	}
	if onExpiry && f.attested == 0 && o.GetPassport() != nil {
		return fmt.Sprintf("party %q passport no longer counts (%s)", orgID, passportDetail(o, f.passport)), true
	}
	if minLevel > 0 && f.level < minLevel {
		return fmt.Sprintf("party %q level %d is below the agreed minimum %d", orgID, f.level, minLevel), true
	}
	return "", false
}

// agreementBroken reports whether an active agreement's conditions are
// broken at now. Unlike AgreementEnded, an agreement that has not started
// yet is not broken: it waits for its not_before.
func (r *Reader) agreementBroken(ag *trustfedv1.Agreement, now time.Time) (string, bool) {
	return r.agreementBrokenWith(ag, now, r.partyBreaksTerms)
}

func (r *Reader) agreementBrokenWith(ag *trustfedv1.Agreement, now time.Time, partyBreaks partyCheck) (string, bool) {
	if nb := ag.GetParsedTerms().GetNotBefore(); nb != nil && now.Before(nb.AsTime()) {
		return "", false
	}
	return r.agreementEnded(ag, now, partyBreaks)
}

// partyMemo remembers partyBreaksTerms within one view and one now: its
// answer depends only on the organisation and the two conditions it reads
// (on_passport_expiry, min_level), so a scan of every agreement (the
// sweeper's, every second on the leader) evaluates each organisation's
// status, passport and level once per distinct condition instead of twice
// per agreement.
type partyMemo struct {
	r    *Reader
	seen map[partyKey]partyVerdict
}

type partyKey struct {
	org      string
	onExpiry bool
	minLevel uint32
}

type partyVerdict struct {
	reason string
	broken bool
}

func newPartyMemo(r *Reader) *partyMemo {
	return &partyMemo{r: r, seen: map[partyKey]partyVerdict{}}
}

// breaks is partyBreaksTerms, memoised; a memo serves one now only.
func (m *partyMemo) breaks(orgID string, terms *trustfedv1.AgreementTerms, now time.Time) (string, bool) {
	cond := terms.GetTermination()
	k := partyKey{org: orgID, onExpiry: cond.GetOnPassportExpiry(), minLevel: cond.GetMinLevel()}
	if v, ok := m.seen[k]; ok {
		return v.reason, v.broken
	}
	reason, broken := m.r.partyBreaksTerms(orgID, terms, now)
	m.seen[k] = partyVerdict{reason, broken}
	return reason, broken
}
