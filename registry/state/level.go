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
}

// OrganizationLevel computes level(org) at now (AG-783 R1, TC6, TC7):
// min(declared, attested by a currently valid passport, onboarding cap while
// onboarding). A missing, expired, not-yet-valid or revoked passport, or one
// from an issuer no longer accredited, attests 0; an issuer's passport
// counts only up to the issuer's max level. Pure: it reads the view and now.
func (r *Reader) OrganizationLevel(o *trustfedv1.Organization, now time.Time) Level {
	l := Level{Level: o.GetDeclaredLevel(), Caps: make([]*trustfedv1.LevelCap, 2, 3)}
	l.Caps[0] = &trustfedv1.LevelCap{Source: CapDeclared, Level: o.GetDeclaredLevel(), Detail: "declared by the organisation"}

	attested, detail := r.attestedLevel(o, now)
	l.Caps[1] = &trustfedv1.LevelCap{Source: CapPassport, Level: attested, Detail: detail}
	l.Level = min(l.Level, attested)

	// The details are concatenated rather than formatted (fmt): this runs
	// for both parties of every check and twice for each organisation an
	// audited command changes; the audit log records the same bytes.
	if until := o.GetOnboardingUntil(); until != nil && now.Before(until.AsTime()) {
		if ov := o.GetOnboardingOverride(); ov != nil {
			l.Caps = append(l.Caps, &trustfedv1.LevelCap{Source: CapOnboarding, Level: MaxLevel,
				Detail: "onboarding cap lifted by " + ov.Principal + " at " + rfc3339(ov.Time) + ": " + ov.Reason})
		} else {
			cap := r.FederationPolicy().GetOnboardingCapLevel()
			l.Caps = append(l.Caps, &trustfedv1.LevelCap{Source: CapOnboarding, Level: cap,
				Detail: "onboarding until " + rfc3339(until)})
			l.Level = min(l.Level, cap)
		}
	}
	return l
}

// rfc3339 formats t in UTC as RFC 3339 (seconds).
func rfc3339(t *timestamppb.Timestamp) string {
	return t.AsTime().UTC().Format(time.RFC3339)
}

func (r *Reader) attestedLevel(o *trustfedv1.Organization, now time.Time) (uint32, string) {
	p := o.GetPassport()
	if p == nil {
		return 0, "no passport"
	}
	iss, ok := r.Issuer(p.IssuerId)
	switch {
	case !ok:
		return 0, "passport " + p.Serial + ": issuer " + strconv.Quote(p.IssuerId) + " unknown"
	case iss.Status != trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED:
		return 0, "passport " + p.Serial + ": issuer " + strconv.Quote(p.IssuerId) + " accreditation withdrawn"
	case r.PassportRevoked(p.Serial):
		return 0, "passport " + p.Serial + " revoked"
	case now.Before(p.GetNotBefore().AsTime()):
		return 0, "passport " + p.Serial + " not valid before " + rfc3339(p.GetNotBefore())
	case !now.Before(p.GetExpireTime().AsTime()): // time-driven: the sweeper's T3 (sweep.go)
		return 0, "passport " + p.Serial + " expired at " + rfc3339(p.GetExpireTime())
	}
	level := min(p.Level, iss.MaxLevel)
	return level, "passport " + p.Serial + " from " + p.IssuerId + ", valid until " + rfc3339(p.GetExpireTime())
}

// AgreementEnded evaluates an agreement's termination conditions and
// validity window at now. It returns a reason when the agreement does not
// hold (terminated, pending, outside its window, or a condition met).
func (r *Reader) AgreementEnded(ag *trustfedv1.Agreement, now time.Time) (reason string, ended bool) {
	return r.agreementEnded(ag, now, r.partyBreaksTerms)
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
	for _, id := range []string{ag.OrganizationAId, ag.OrganizationBId} {
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
	switch o.Status {
	case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED:
		return fmt.Sprintf("party %q is suspended", orgID), true
	case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED:
		return fmt.Sprintf("party %q is revoked", orgID), true
	}
	cond := terms.GetTermination()
	if cond.GetOnPassportExpiry() {
		if attested, detail := r.attestedLevel(o, now); attested == 0 && o.GetPassport() != nil {
			return fmt.Sprintf("party %q passport no longer counts (%s)", orgID, detail), true
		}
	}
	if min := cond.GetMinLevel(); min > 0 {
		if l := r.OrganizationLevel(o, now); l.Level < min {
			return fmt.Sprintf("party %q level %d is below the agreed minimum %d", orgID, l.Level, min), true
		}
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
