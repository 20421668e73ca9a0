package state

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The leader's sweeper (revocation.Runner.RunSweeper) asks every second
// whether a Sweep would end anything: an open session past its expiry or an
// active agreement that time has broken. Asking must not cost a scan of
// every agreement (issue 19: 1,000,000 of them), so the question is put to
// indexes of the times at which something can become due.
//
// When an active agreement stops holding (agreementBroken, level.go):
//
// By time alone, with no write:
//   - T1: its not_after is reached (an end date);
//   - T2: its not_before is reached: it is evaluated from then on, so a
//     condition a write broke before it started ends it then;
//   - T3: a party's passport expire_time is reached: the passport attests
//     0, which breaks on_passport_expiry and any min_level > 0.
//
// Time also heals (a passport's not_before, the end of onboarding raise a
// level); those never make anything due.
//
// By a write that runs the cascade in the same apply (endBrokenAgreements
// or cutOff, evaluated at the command's time): suspension or revocation of
// a party (setOrganizationStatus), its declared level (setDeclaredLevel), a
// passport renewal (applySubmitPassport) or revocation (revokePassport), an
// issuer's withdrawal (withdrawIssuer). What such a write breaks is ended at
// once, except an agreement that has not started yet: that one is T2's.
//
// By a write that does not run the cascade, left to the sweeper:
//   - W1: an agreement's activation (applySignAgreement does not evaluate
//     the conditions: an agreement signed after its end date, or by a party
//     below its min_level, is active until the next sweep);
//   - W2: a federation policy change of the onboarding cap (it can lower
//     the level of every organisation still onboarding).
//
// So the indexes: open sessions by expiry; active agreements by not_after
// (T1); active agreements by the time they start to be evaluated, the later
// of not_before and their activation (T2, W1; an active agreement is never
// rewritten but to end it, so its update time is its activation);
// organisations by passport expiry (T3). W2 is rare (an admin change): a
// policy written since the mark sends the sweeper back to a full scan.

// SweepSkew is how long before it is applied a command may have been
// stamped, for SweepDueSince: a write stamped at w is found by a check
// whose mark is later than w only if what it made due is indexed at or
// after w, and the check reads from the mark's time less SweepSkew. A
// command's time is the leader's clock when it proposed it; Raft applies it
// within milliseconds unless an election intervenes (and a new leader's
// sweeper starts with a full scan).
const SweepSkew = time.Minute

// SweepMark is a state and a time at which nothing was due: SweepDue or
// SweepDueSince on the view at Index, at Time, answered false.
type SweepMark struct {
	Time  time.Time
	Index uint64
}

// MaxSweepIDs bounds each list of a Sweep command: a look that finds more
// due proposes the first MaxSweepIDs, and the next look the rest.
const MaxSweepIDs = 10_000

// NextSweep is the Sweep the leader's sweeper proposes at now, given that
// nothing was due at mark (SweepDueSince; a zero mark: a full scan, as
// SweepDue), or nil when nothing is due. It names what it found due (at
// most MaxSweepIDs of each), so the state machine judges those again
// rather than scanning every agreement on every node.
func (r *Reader) NextSweep(mark SweepMark, now time.Time) *commandv1.Sweep {
	var sessions []*trustfedv1.Session
	var agreements []brokenAgreement
	if r.sweepNeedsFullScan(mark, now) {
		sessions, agreements = r.sweepable(now, false)
	} else {
		sessions, agreements, _ = r.dueSince(mark, now, false)
	}
	if len(sessions) == 0 && len(agreements) == 0 {
		return nil
	}
	c := &commandv1.Sweep{}
	for _, s := range sessions[:min(len(sessions), MaxSweepIDs)] {
		c.SessionIds = append(c.SessionIds, s.GetId())
	}
	for _, b := range agreements[:min(len(agreements), MaxSweepIDs)] {
		c.AgreementIds = append(c.AgreementIds, b.ag.GetId())
	}
	return c
}

// sweepTargets is what the Sweep c ends at now, in id order: what it names
// that is due at now (judged as sweepable judges), or, if it names
// nothing (a Sweep from before it named what it ends), everything due.
func sweepTargets(r *Reader, c *commandv1.Sweep, now time.Time) (sessions []*trustfedv1.Session, agreements []brokenAgreement, err error) {
	if len(c.GetSessionIds()) == 0 && len(c.GetAgreementIds()) == 0 {
		sessions, agreements = r.sweepable(now, false)
		return sessions, agreements, nil
	}
	if n := len(c.GetSessionIds()); n > MaxSweepIDs {
		return nil, nil, Invalid("session_ids", "names %d sessions, more than %d", n, MaxSweepIDs)
	}
	if n := len(c.GetAgreementIds()); n > MaxSweepIDs {
		return nil, nil, Invalid("agreement_ids", "names %d agreements, more than %d", n, MaxSweepIDs)
	}
	for i, id := range c.GetSessionIds() {
		if err := ValidateSessionID(fmt.Sprintf("session_ids[%d]", i), id); err != nil {
			return nil, nil, err
		}
	}
	for i, id := range c.GetAgreementIds() {
		if err := ValidateAgreementID(fmt.Sprintf("agreement_ids[%d]", i), id); err != nil {
			return nil, nil, err
		}
	}
	for _, id := range slices.Compact(slices.Sorted(slices.Values(c.GetSessionIds()))) {
		if s, ok := r.Session(id); ok && s.GetStatus() == trustfedv1.SessionStatus_SESSION_STATUS_OPEN && !now.Before(s.GetExpireTime().AsTime()) {
			sessions = append(sessions, s)
		}
	}
	memo := newPartyMemo(r)
	for _, id := range slices.Compact(slices.Sorted(slices.Values(c.GetAgreementIds()))) {
		if ag, ok := r.Agreement(id); ok && ag.GetStatus() == trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
			if reason, broken := r.agreementBrokenWith(ag, now, memo.breaks); broken {
				agreements = append(agreements, brokenAgreement{ag, reason})
			}
		}
	}
	return sessions, agreements, nil
}

// SweepDue reports whether a Sweep at now would change anything: an open
// session past its expiry or an active agreement that time (or a write
// that did not run the cascade) has broken. A scan of every agreement:
// see SweepDueSince for the sweeper's every-second question.
func (r *Reader) SweepDue(now time.Time) bool {
	sessions, agreements := r.sweepable(now, true)
	return len(sessions) > 0 || len(agreements) > 0
}

// SweepDueSince answers as SweepDue(now) does, given that nothing was due
// at mark, reading only what can have become due since: open sessions past
// their expiry and agreements past their end date (always due, so none is
// read twice), and the agreements that started, were activated or had a
// party's passport expire from mark.Time-SweepSkew to now. Its cost is
// O(what is due + what changed in that window + log n), not O(agreements).
// It falls back to the full scan when mark is zero, now is before it, the
// view is older than it, or the federation policy changed since (W2).
func (r *Reader) SweepDueSince(mark SweepMark, now time.Time) bool {
	if r.sweepNeedsFullScan(mark, now) {
		return r.SweepDue(now)
	}
	sessions, agreements, _ := r.dueSince(mark, now, true)
	return len(sessions) > 0 || len(agreements) > 0
}

// sweepNeedsFullScan reports whether a look from mark at now must scan
// everything: no mark, a clock that went back, an older view, or a policy
// written since the mark (W2).
func (r *Reader) sweepNeedsFullScan(mark SweepMark, now time.Time) bool {
	return mark.Time.IsZero() || now.Before(mark.Time) || r.Index() < mark.Index || r.FederationPolicy().GetModifyIndex() > mark.Index
}

// sweepable lists what a Sweep at now ends, in id order; only the first
// found if first. It reads every open session and every agreement.
func (r *Reader) sweepable(now time.Time, first bool) (sessions []*trustfedv1.Session, agreements []brokenAgreement) {
	if it, err := r.txn.Get(tableSessions, "open", true); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if s := raw.(*trustfedv1.Session); !now.Before(s.ExpireTime.AsTime()) {
				if sessions = append(sessions, s); first {
					return sessions, nil
				}
			}
		}
	}
	if it, err := r.txn.Get(tableAgreements, "id"); err == nil {
		memo := newPartyMemo(r)
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if ag := raw.(*trustfedv1.Agreement); ag.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
				if reason, broken := r.agreementBrokenWith(ag, now, memo.breaks); broken {
					if agreements = append(agreements, brokenAgreement{ag, reason}); first {
						return nil, agreements
					}
				}
			}
		}
	}
	return sessions, agreements
}

// dueSince lists, in id order (only the first found if first), the open
// sessions past their expiry at now and the active agreements broken at
// now among those indexed as past their end date (T1), or as starting or
// activated (T2, W1) or having a party whose passport expired (T3) at a
// time in [mark.Time-SweepSkew, now]. Each agreement is judged by the same
// test as sweepable's (agreementBroken); judged counts them (tests).
//
// Of the agreements the T2/W1 window holds, it does not judge again those
// the look at mark judged: active in its view (modify_index at most
// mark.Index) and evaluated at its time (not_before at most mark.Time).
// Nothing was due at mark, and what can break such an agreement since is
// a write that runs the cascade, a policy change (a full scan), an end
// date (T1) or a passport's expiry (T3), each read on its own. The window
// reaches back SweepSkew for writes stamped before the mark and applied
// after it; after a bulk import every look of the next minute judged all
// the agreements imported (issue 19: 100,000 a second on the leader).
func (r *Reader) dueSince(mark SweepMark, now time.Time, first bool) (sessions []*trustfedv1.Session, agreements []brokenAgreement, judged int) {
	from := mark.Time.Add(-SweepSkew)
	// Open sessions past their expiry: every one read is due.
	if it, err := r.txn.Get(tableSessions, "open_expire"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			s := raw.(*trustfedv1.Session)
			if now.Before(s.GetExpireTime().AsTime()) {
				break
			}
			if sessions = append(sessions, s); first {
				return sessions, nil, 0
			}
		}
	}
	memo := newPartyMemo(r)
	seen := map[string]bool{}
	// judge reports whether to stop: first and ag is due.
	judge := func(ag *trustfedv1.Agreement) bool {
		if ag.GetStatus() != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE || seen[ag.GetId()] {
			return false
		}
		seen[ag.GetId()] = true
		judged++
		if reason, broken := r.agreementBrokenWith(ag, now, memo.breaks); broken {
			agreements = append(agreements, brokenAgreement{ag, reason})
			return first
		}
		return false
	}
	// T1, from the earliest end date: an active agreement past its end
	// date that has started is always due, and not_before < not_after
	// (CheckTerms), so this reads no agreement that is not due.
	if it, err := r.txn.Get(tableAgreements, "active_end"); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			ag := raw.(*trustfedv1.Agreement)
			if now.Before(ag.GetParsedTerms().GetNotAfter().AsTime()) {
				break
			}
			if judge(ag) {
				return nil, agreements, judged
			}
		}
	}
	// T2 and W1: agreements that started or were activated in [from, now].
	if it, err := r.txn.LowerBound(tableAgreements, "active_start", from); err == nil {
		for raw := it.Next(); raw != nil; raw = it.Next() {
			ag := raw.(*trustfedv1.Agreement)
			if now.Before(agreementStart(ag).AsTime()) {
				break
			}
			if judgedAtMark(ag, mark) {
				continue
			}
			if judge(ag) {
				return nil, agreements, judged
			}
		}
	}
	// T3: the agreements of organisations whose passport expired in
	// [from, now].
	if it, err := r.txn.LowerBound(tableOrganizations, "passport_expire", from); err == nil {
		var orgs []string
		for raw := it.Next(); raw != nil; raw = it.Next() {
			o := raw.(*trustfedv1.Organization)
			if now.Before(o.GetPassport().GetExpireTime().AsTime()) {
				break
			}
			orgs = append(orgs, o.GetId())
		}
		for _, org := range orgs {
			stop := false
			// Only active agreements can end (eachActiveAgreement reads
			// them through the edges table: agreements.go).
			if err := r.eachActiveAgreement(func(ag *trustfedv1.Agreement) bool {
				stop = judge(ag)
				return !stop
			}, org); err != nil {
				continue
			}
			if stop {
				return nil, agreements, judged
			}
		}
	}
	slices.SortFunc(sessions, func(a, b *trustfedv1.Session) int { return cmp.Compare(a.GetId(), b.GetId()) })
	slices.SortFunc(agreements, func(a, b brokenAgreement) int { return cmp.Compare(a.ag.GetId(), b.ag.GetId()) })
	return sessions, agreements, judged
}

// judgedAtMark reports whether the look at mark judged ag: ag was active in
// its view and evaluated at its time.
func judgedAtMark(ag *trustfedv1.Agreement, mark SweepMark) bool {
	if ag.GetModifyIndex() > mark.Index {
		return false
	}
	nb := ag.GetParsedTerms().GetNotBefore()
	return nb == nil || !nb.AsTime().After(mark.Time)
}

// agreementStart is when an active agreement starts to be evaluated: the
// later of its not_before and its activation (its update time: an active
// agreement is only rewritten to end it).
func agreementStart(ag *trustfedv1.Agreement) *timestamppb.Timestamp {
	nb, act := ag.GetParsedTerms().GetNotBefore(), ag.GetUpdateTime()
	switch {
	case nb == nil:
		return act
	case act == nil || nb.AsTime().After(act.AsTime()):
		return nb
	}
	return act
}

// sweepTimeKey orders times: seconds (sign bit flipped, so times before
// 1970 sort first) then nanoseconds, big-endian. Seconds, not UnixNano,
// which overflows outside 1678..2262 (a passport may say 9999).
func sweepTimeKey(seconds int64, nanos int32) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(seconds)^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(nanos))
}

func sweepTimestampKey(t *timestamppb.Timestamp) []byte {
	return sweepTimeKey(t.GetSeconds(), t.GetNanos())
}

// sweepTimeArgs reads the one time.Time argument of a sweeper index.
func sweepTimeArgs(index string, args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s index: want 1 arg, got %d", index, len(args))
	}
	t, ok := args[0].(time.Time)
	if !ok {
		return nil, fmt.Errorf("%s index: arg must be a time.Time", index)
	}
	return sweepTimeKey(t.Unix(), int32(t.Nanosecond())), nil
}

// openSessionExpireIndex indexes open sessions by expire_time.
type openSessionExpireIndex struct{}

func (openSessionExpireIndex) FromObject(raw any) (bool, []byte, error) {
	s, ok := raw.(*trustfedv1.Session)
	if !ok {
		return false, nil, fmt.Errorf("open session expire index: unexpected %T", raw)
	}
	if s.GetStatus() != trustfedv1.SessionStatus_SESSION_STATUS_OPEN {
		return false, nil, nil
	}
	// A missing expire_time reads as 1970 (AsTime), as sweepable reads it.
	return true, sweepTimestampKey(s.GetExpireTime()), nil
}

func (openSessionExpireIndex) FromArgs(args ...any) ([]byte, error) {
	return sweepTimeArgs("open session expire", args)
}

// activeEndIndex indexes active agreements by not_after (T1).
type activeEndIndex struct{}

func (activeEndIndex) FromObject(raw any) (bool, []byte, error) {
	ag, ok := raw.(*trustfedv1.Agreement)
	if !ok {
		return false, nil, fmt.Errorf("active end index: unexpected %T", raw)
	}
	na := ag.GetParsedTerms().GetNotAfter()
	if ag.GetStatus() != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE || na == nil {
		return false, nil, nil
	}
	return true, sweepTimestampKey(na), nil
}

func (activeEndIndex) FromArgs(args ...any) ([]byte, error) { return sweepTimeArgs("active end", args) }

// activeStartIndex indexes active agreements by agreementStart (T2, W1).
type activeStartIndex struct{}

func (activeStartIndex) FromObject(raw any) (bool, []byte, error) {
	ag, ok := raw.(*trustfedv1.Agreement)
	if !ok {
		return false, nil, fmt.Errorf("active start index: unexpected %T", raw)
	}
	start := agreementStart(ag)
	if ag.GetStatus() != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE || start == nil {
		return false, nil, nil
	}
	return true, sweepTimestampKey(start), nil
}

func (activeStartIndex) FromArgs(args ...any) ([]byte, error) {
	return sweepTimeArgs("active start", args)
}

// passportExpireIndex indexes organisations by their passport's
// expire_time (T3).
type passportExpireIndex struct{}

func (passportExpireIndex) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*trustfedv1.Organization)
	if !ok {
		return false, nil, fmt.Errorf("passport expire index: unexpected %T", raw)
	}
	if o.GetPassport() == nil {
		return false, nil, nil
	}
	// A missing expire_time reads as 1970 (AsTime), as attestedLevel reads it.
	return true, sweepTimestampKey(o.GetPassport().GetExpireTime()), nil
}

func (passportExpireIndex) FromArgs(args ...any) ([]byte, error) {
	return sweepTimeArgs("passport expire", args)
}
