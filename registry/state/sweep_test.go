package state

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sweepSim is a random state driven like the leader's sweeper drives the
// real one: writes with the state machine's cascade semantics, looks at
// increasing times with a mark, a Sweep applied whenever a look finds
// something due. Rows are written into the store directly (the conditions
// matter, not signatures); each write mirrors its command's apply:
// terminateBrokenAgreements where the command runs the cascade, nothing
// where it does not (activation, policy).
type sweepSim struct {
	t     *testing.T
	rng   *rand.Rand
	store *Store
	index uint64
	now   time.Time
	orgs  []string
	nAgr  int
	nSes  int
}

func (s *sweepSim) ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// around is a random time within span either side of s.now.
func (s *sweepSim) around(span time.Duration) time.Time {
	return s.now.Add(time.Duration(s.rng.Int64N(int64(2*span))) - span)
}

// write runs fn in one transaction at the next index, stamped w.
func (s *sweepSim) write(w time.Time, fn func(tx *memdb.Txn, env *commandv1.Envelope, index uint64)) {
	s.index++
	tx := s.store.db.Load().Txn(true)
	defer tx.Abort()
	fn(tx, &commandv1.Envelope{Time: s.ts(w)}, s.index)
	mustDo(setIndex(tx, s.index))
	tx.Commit()
}

func (s *sweepSim) org(tx *memdb.Txn, id string) *trustfedv1.Organization {
	o, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", id)
	require.True(s.t, ok, id)
	return proto.CloneOf(o)
}

func (s *sweepSim) passport(serial int) *trustfedv1.Passport {
	if s.rng.IntN(8) == 0 {
		return nil
	}
	issuer := "iss-good"
	if s.rng.IntN(6) == 0 {
		issuer = "iss-gone"
	}
	return &trustfedv1.Passport{
		Serial: fmt.Sprintf("pp-%d", serial), IssuerId: issuer, Level: uint32(s.rng.IntN(MaxLevel + 1)),
		NotBefore: s.ts(s.around(2 * 24 * time.Hour)), ExpireTime: s.ts(s.around(5 * 24 * time.Hour)),
	}
}

func (s *sweepSim) newOrg(tx *memdb.Txn, id string, index uint64) {
	o := &trustfedv1.Organization{Id: id, Name: "name " + id, DeclaredLevel: uint32(s.rng.IntN(MaxLevel + 1)),
		Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, Passport: s.passport(int(index)), ModifyIndex: index}
	if s.rng.IntN(8) == 0 {
		o.Status = trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED
	}
	if s.rng.IntN(3) == 0 {
		o.OnboardingUntil = s.ts(s.around(3 * 24 * time.Hour))
		if s.rng.IntN(3) == 0 {
			o.OnboardingOverride = &trustfedv1.OnboardingOverride{Reason: "test", Principal: "admin", Time: s.ts(s.now)}
		}
	}
	mustDo(tx.Insert(tableOrganizations, o))
}

// newAgreement is an active agreement activated at w (no cascade: W1).
func (s *sweepSim) newAgreement(tx *memdb.Txn, w time.Time, index uint64) {
	s.nAgr++
	a := s.orgs[s.rng.IntN(len(s.orgs))]
	b := s.orgs[s.rng.IntN(len(s.orgs))]
	for b == a {
		b = s.orgs[s.rng.IntN(len(s.orgs))]
	}
	nb := s.around(4 * 24 * time.Hour)
	na := nb.Add(time.Duration(1+s.rng.Int64N(int64(8*24*time.Hour))) * 1)
	ag := &trustfedv1.Agreement{
		Id: fmt.Sprintf("agr-%016x", s.nAgr), OrganizationAId: a, OrganizationBId: b,
		Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, CreateIndex: index, ModifyIndex: index,
		CreateTime: s.ts(w), UpdateTime: s.ts(w),
		ParsedTerms: &trustfedv1.AgreementTerms{NotBefore: s.ts(nb), NotAfter: s.ts(na),
			Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true,
				MinLevel: uint32(s.rng.IntN(MaxLevel + 1)), OnPassportExpiry: s.rng.IntN(2) == 0}},
	}
	mustDo(tx.Insert(tableAgreements, ag))
	mustDo(addEdges(tx, a, b, ag.Id))
}

func (s *sweepSim) newSession(tx *memdb.Txn, w time.Time, index uint64) {
	s.nSes++
	ses := &trustfedv1.Session{Id: fmt.Sprintf("ses-%016x", s.nSes), FromOrganizationId: s.orgs[0], ToOrganizationId: s.orgs[1],
		Status: trustfedv1.SessionStatus_SESSION_STATUS_OPEN, OpenTime: s.ts(w), ExpireTime: s.ts(w.Add(time.Duration(s.rng.Int64N(int64(time.Hour))))),
		CreateIndex: index, ModifyIndex: index}
	mustDo(tx.Insert(tableSessions, ses))
}

// randomWrite applies one random write stamped w.
func (s *sweepSim) randomWrite(w time.Time) {
	org := s.orgs[s.rng.IntN(len(s.orgs))]
	cascade := func(tx *memdb.Txn, env *commandv1.Envelope, index uint64, orgs ...string) {
		for _, o := range orgs {
			_, err := terminateBrokenAgreements(tx, env, index, o)
			mustDo(err)
		}
	}
	switch s.rng.IntN(9) {
	case 0, 1, 2: // SignAgreement's activation: no cascade
		s.write(w, func(tx *memdb.Txn, _ *commandv1.Envelope, index uint64) { s.newAgreement(tx, w, index) })
	case 3: // SubmitPassport: cascade
		s.write(w, func(tx *memdb.Txn, env *commandv1.Envelope, index uint64) {
			o := s.org(tx, org)
			o.Passport, o.ModifyIndex = s.passport(int(index)), index
			mustDo(tx.Insert(tableOrganizations, o))
			cascade(tx, env, index, org)
		})
	case 4: // set status (suspend, or reactivate): cascade when not active
		s.write(w, func(tx *memdb.Txn, env *commandv1.Envelope, index uint64) {
			o := s.org(tx, org)
			o.Status, o.ModifyIndex = trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED, index
			if s.rng.IntN(2) == 0 {
				o.Status = trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE
			}
			mustDo(tx.Insert(tableOrganizations, o))
			if o.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
				cascade(tx, env, index, org)
			}
		})
	case 5: // set declared level: cascade
		s.write(w, func(tx *memdb.Txn, env *commandv1.Envelope, index uint64) {
			o := s.org(tx, org)
			o.DeclaredLevel, o.ModifyIndex = uint32(s.rng.IntN(MaxLevel+1)), index
			mustDo(tx.Insert(tableOrganizations, o))
			cascade(tx, env, index, org)
		})
	case 6: // revoke the org's passport: cascade for its holder
		s.write(w, func(tx *memdb.Txn, env *commandv1.Envelope, index uint64) {
			if p := s.org(tx, org).GetPassport(); p != nil && !(&Reader{txn: tx}).PassportRevoked(p.Serial) {
				mustDo(tx.Insert(tableRevoked, &commandv1.RevokedPassport{Serial: p.Serial, Index: index}))
				cascade(tx, env, index, org)
			}
		})
	case 7: // the onboarding cap: no cascade (W2)
		s.write(w, func(tx *memdb.Txn, _ *commandv1.Envelope, index uint64) {
			mustDo(tx.Insert(tablePolicy, &trustfedv1.FederationPolicy{OnboardingCapLevel: uint32(s.rng.IntN(MaxLevel + 1)), ModifyIndex: index}))
		})
	case 8:
		s.write(w, func(tx *memdb.Txn, _ *commandv1.Envelope, index uint64) { s.newSession(tx, w, index) })
	}
}

func newSweepSim(t *testing.T, seed uint64) *sweepSim {
	s := &sweepSim{t: t, rng: rand.New(rand.NewPCG(seed, 19)), store: NewStore(), now: t0}
	s.write(s.now, func(tx *memdb.Txn, _ *commandv1.Envelope, index uint64) {
		mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "iss-good", MaxLevel: uint32(2 + s.rng.IntN(3)), Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED}))
		mustDo(tx.Insert(tableIssuers, &trustfedv1.Issuer{Id: "iss-gone", MaxLevel: MaxLevel, Status: trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN}))
		for i := range 6 + s.rng.IntN(10) {
			id := fmt.Sprintf("org-%02d", i)
			s.orgs = append(s.orgs, id)
			s.newOrg(tx, id, index)
		}
		for range 20 + s.rng.IntN(60) {
			s.newAgreement(tx, s.now.Add(-time.Duration(s.rng.Int64N(int64(4*24*time.Hour)))), index) // activated in the past
		}
		for range s.rng.IntN(5) {
			s.newSession(tx, s.around(time.Hour), index)
		}
	})
	return s
}

func sweptIDs(sessions []*trustfedv1.Session, agreements []brokenAgreement) []string {
	var out []string
	for _, x := range sessions {
		out = append(out, x.Id)
	}
	for _, b := range agreements {
		out = append(out, b.ag.Id+": "+b.reason)
	}
	return out
}

// The sweeper's look through the time indexes finds exactly what the scan
// of every agreement finds, on random states (random not_before/not_after,
// passports and their expiry, issuers, levels, onboarding, terms'
// min_level and on_passport_expiry) driven through random writes — with and
// without the cascade, stamped up to 30 s before they apply — and looks at
// random increasing times, a Sweep applied whenever something is due.
func TestSweepDueSinceMatchesFullScan(t *testing.T) {
	var windowed, windowedDue, fulls int
	for seed := range uint64(40) {
		s := newSweepSim(t, seed)
		var mark SweepMark
		steps := []time.Duration{time.Second, 10 * time.Second, time.Minute, 20 * time.Minute, 3 * time.Hour, 14 * time.Hour}
		for step := range 250 {
			s.now = s.now.Add(steps[s.rng.IntN(len(steps))])
			for range s.rng.IntN(3) {
				s.randomWrite(s.now.Add(-time.Duration(s.rng.Int64N(int64(30 * time.Second)))))
			}
			r := s.store.Read()
			wantS, wantA := r.sweepable(s.now, false)
			want := sweptIDs(wantS, wantA)
			usesWindow := !mark.Time.IsZero() && r.FederationPolicy().GetModifyIndex() <= mark.Index
			if usesWindow {
				gotS, gotA, _ := r.dueSince(mark, s.now, false)
				require.Equal(t, want, sweptIDs(gotS, gotA), "seed %d step %d at %s (mark %s)", seed, step, s.now, mark.Time)
				windowed++
				if len(want) > 0 {
					windowedDue++
				}
			} else {
				fulls++
			}
			due := r.SweepDueSince(mark, s.now)
			require.Equal(t, len(want) > 0, due, "seed %d step %d", seed, step)
			require.Equal(t, r.SweepDue(s.now), due)
			if !due {
				mark = SweepMark{Time: s.now, Index: r.Index()}
				continue
			}
			// The Sweep the sweeper proposes names what is due, and ends it.
			sweep := r.NextSweep(mark, s.now)
			require.NotNil(t, sweep)
			var named []string
			for _, x := range wantS {
				named = append(named, x.Id)
			}
			for _, b := range wantA {
				named = append(named, b.ag.Id)
			}
			require.Equal(t, named, append(slices.Clone(sweep.SessionIds), sweep.AgreementIds...))
			payload, err := proto.Marshal(sweep)
			require.NoError(t, err)
			s.write(s.now, func(tx *memdb.Txn, env *commandv1.Envelope, index uint64) {
				env.Payload = payload
				mustDo(applySweep(tx, env, index, nil))
			})
			leftS, leftA := s.store.Read().sweepable(s.now, false)
			require.Empty(t, sweptIDs(leftS, leftA), "the Sweep ends everything due")
		}
	}
	t.Logf("looks: %d through the window (%d found something due), %d full scans", windowed, windowedDue, fulls)
	require.Greater(t, windowedDue, 100, "the window must be what finds most of what falls due")
}

// The window's reads are bounded by what changed in it: agreements whose
// party's passport expired long ago, and that do not react to it, are not
// read again by every look — only by the looks whose window holds the
// expiry.
func TestSweepDueSinceSkipsWhatStayedDue(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	for i := range 21 {
		h.member(fmt.Sprintf("org-%02d", i), 3, 3)
	}
	for i := 1; i <= 20; i++ {
		h.agreement(fmt.Sprintf("agr-%016x", i), "org-00", fmt.Sprintf("org-%02d", i), 0)
	}
	// Terms that survive a passport's expiry (the fixture's react to it).
	tx := h.fsm.store.db.Load().Txn(true)
	for i := 1; i <= 20; i++ {
		cur, _ := first[*trustfedv1.Agreement](tx, tableAgreements, "id", fmt.Sprintf("agr-%016x", i))
		ag := proto.CloneOf(cur)
		ag.ParsedTerms.Termination.OnPassportExpiry = false
		mustDo(tx.Insert(tableAgreements, ag))
	}
	tx.Commit()
	r := h.read()
	o, _ := r.Organization("org-00")
	expiry := o.Passport.ExpireTime.AsTime()
	ag, _ := r.Agreement("agr-0000000000000001")
	require.True(t, expiry.Before(ag.ParsedTerms.NotAfter.AsTime()), "the fixture: the passports expire before the agreements end")
	require.False(t, r.SweepDue(expiry.Add(time.Hour)), "the fixture: nothing due once the passports expired")

	_, due, judged := r.dueSince(SweepMark{Time: expiry.Add(-time.Minute + SweepSkew), Index: r.Index()}, expiry.Add(time.Second), false)
	require.Empty(t, due)
	require.Equal(t, 20, judged, "the look whose window holds the expiry reads org-00's agreements")
	_, due, judged = r.dueSince(SweepMark{Time: expiry.Add(time.Hour), Index: r.Index()}, expiry.Add(time.Hour), false)
	require.Empty(t, due)
	require.Zero(t, judged, "a later look reads none of them")
}

// A look does not judge again the agreements the look before it judged:
// after a bulk import the window of the next SweepSkew holds every
// imported agreement, and only the first look after it judges them.
func TestSweepDueSinceSkipsWhatTheMarkJudged(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	for i := range 21 {
		h.member(fmt.Sprintf("org-%02d", i), 3, 3)
	}
	r := h.read()
	before := SweepMark{Time: h.now, Index: r.Index()}
	for i := 1; i <= 20; i++ {
		h.agreement(fmt.Sprintf("agr-%016x", i), "org-00", fmt.Sprintf("org-%02d", i), 0)
	}
	r = h.read()
	last := time.Time{}
	for i := 1; i <= 20; i++ {
		ag, ok := r.Agreement(fmt.Sprintf("agr-%016x", i))
		require.True(t, ok)
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, ag.Status)
		if s := agreementStart(ag).AsTime(); s.After(last) {
			last = s
		}
	}
	now := last.Add(time.Second)
	require.False(t, r.SweepDue(now), "the fixture: nothing due")

	_, due, judged := r.dueSince(before, now, false)
	require.Empty(t, due)
	require.Equal(t, 20, judged, "the first look after the activations judges them")
	mark := SweepMark{Time: now, Index: r.Index()}
	_, due, judged = r.dueSince(mark, now.Add(time.Second), false)
	require.Empty(t, due)
	require.Zero(t, judged, "the next look, within SweepSkew of them, judges none again")
	_, due, judged = r.dueSince(SweepMark{Time: now, Index: before.Index}, now.Add(time.Second), false)
	require.Empty(t, due)
	require.Equal(t, 20, judged, "a mark from before the activations did not judge them")
}

// The sweeper's index keys order times as time does, before 1970 and after
// 2262 (where UnixNano overflows) included.
func TestSweepTimeKeyOrdersTimes(t *testing.T) {
	times := []time.Time{
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(0, 0), time.Unix(0, 1), t0, t0.Add(time.Nanosecond), time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		prev, _ := sweepTimeArgs("test", []any{times[i-1]})
		cur, _ := sweepTimeArgs("test", []any{times[i]})
		require.Negative(t, bytes.Compare(prev, cur), "%s before %s", times[i-1], times[i])
		require.Equal(t, cur, sweepTimestampKey(timestamppb.New(times[i])))
	}
}

// A Sweep that names what it ends judges each again at its time: what is
// not due is left as it is, names that are not ids are refused with the
// field, and a Sweep naming nothing (one from before it named them) scans
// everything.
func TestSweepNamingWhatItEnds(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("org-a", 3, 3)
	h.member("org-b", 3, 3)
	h.member("org-c", 3, 3)
	h.agreement("agr-0000000000000001", "org-a", "org-b", 0)
	h.agreement("agr-0000000000000002", "org-a", "org-c", 0)
	ses := h.openSession("org-a", "org-b", "req-1", time.Minute)
	ag, _ := h.read().Agreement("agr-0000000000000001")
	h.now = ag.ParsedTerms.NotAfter.AsTime().Add(time.Second) // both agreements past their end, the session expired

	res := h.apply(&commandv1.Sweep{AgreementIds: []string{"agr-0000000000000001", "not-an-id"}}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument)
	require.Contains(t, res.Err.Error(), "agreement_ids[1]")
	res = h.apply(&commandv1.Sweep{SessionIds: make([]string, MaxSweepIDs+1)}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument)
	require.Contains(t, res.Err.Error(), "session_ids")

	h.must(&commandv1.Sweep{AgreementIds: []string{"agr-0000000000000001", "agr-0000000000000001", "agr-00000000000000ff"}})
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, h.agreementStatus("agr-0000000000000002"), "not named")
	s, _ := h.read().Session(ses)
	require.Equal(t, trustfedv1.SessionStatus_SESSION_STATUS_TERMINATED, s.Status, "cut with its agreement")

	h.must(&commandv1.Sweep{})
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000002"), "a Sweep naming nothing scans everything")
	require.Nil(t, h.read().NextSweep(SweepMark{}, h.now))
}
