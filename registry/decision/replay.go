package decision

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ReplayKeep is how many states (one per replayed command) Replay keeps to
// re-evaluate decisions at: a decision is computed at the read index of the
// node that answered, a few commands before it is logged.
const ReplayKeep = 100000

// ErrReplay: the entries given to Replay are not a whole log read in order.
var ErrReplay = errors.New("replay needs the whole audit log in order")

// ReplayReport is what Replay found.
type ReplayReport struct {
	// Entries read.
	Entries uint64 `json:"entries"`
	// Commands applied, and commands skipped because their secrets were
	// removed from the log (redacted: tokens, the registry key; they never
	// bear on a decision).
	Commands uint64 `json:"commands"`
	Redacted uint64 `json:"redacted"`
	// Decisions re-evaluated; level changes and cascades checked against
	// the rebuilt state.
	Decisions    uint64 `json:"decisions"`
	LevelChanges uint64 `json:"level_changes"`
	Cascades     uint64 `json:"cascades"`
	// Mismatches: every entry the rebuilt state disagrees with.
	Mismatches []ReplayMismatch `json:"mismatches"`
}

// ReplayMismatch is one entry the replay disagrees with.
type ReplayMismatch struct {
	Sequence uint64 `json:"sequence"`
	Type     string `json:"type"`
	Problem  string `json:"problem"`
}

func (m ReplayMismatch) String() string {
	return fmt.Sprintf("entry %d (%s): %s", m.Sequence, m.Type, m.Problem)
}

// keptState is the state right after the command at index.
type keptState struct {
	index uint64
	r     *state.Reader
}

// replayer rebuilds the state from the log's command entries.
type replayer struct {
	fsm     *state.FSM
	kept    []keptState // ring, oldest first from head
	head    int
	report  ReplayReport
	last    uint64 // log index of the last command applied
	lastEnv *commandv1.Envelope
	// uses: the entry of the decision that held each use of an
	// authorisation (by authorisation id, then the use's index).
	uses map[string]map[uint64]uint64
}

// Replay rebuilds the registry state from the audit log's command entries,
// in order from entry 0 (next yields them; it must not skip one), and
// checks the log against it: every command must be refused or accepted as
// the log says, every decision must be the one Evaluate gives on
// the state it was computed at (the statement's index) and at its time,
// every level change and cascade must be in the rebuilt state. progress,
// if not nil, is called with the number of entries read so far. It fails
// only when it cannot go on (a gap, an entry that does not decode, next's
// error); disagreements are the report's Mismatches.
func Replay(next func() (*trustfedv1.AuditRecord, bool, error), progress func(n uint64)) (ReplayReport, error) {
	store := state.NewStore()
	p := &replayer{fsm: state.NewFSM(store, attestation.Verifier{}, nil), report: ReplayReport{Mismatches: []ReplayMismatch{}}, uses: map[string]map[uint64]uint64{}}
	p.keep(0, store.Read())
	for {
		rec, ok, err := next()
		if err != nil {
			return p.report, fmt.Errorf("replay: read entry %d: %w", p.report.Entries, err)
		}
		if !ok {
			return p.report, nil
		}
		e, err := recordEntry(rec, p.report.Entries)
		if err != nil {
			return p.report, err
		}
		p.report.Entries++
		p.entry(e)
		if progress != nil {
			progress(p.report.Entries)
		}
	}
}

// recordEntry is the entry a record holds (decoded from its leaf bytes when
// it has them), which must be entry want.
func recordEntry(rec *trustfedv1.AuditRecord, want uint64) (*trustfedv1.AuditEntry, error) {
	e := rec.GetEntry()
	if len(rec.GetLeaf()) > 0 {
		e = &trustfedv1.AuditEntry{}
		if err := proto.Unmarshal(rec.Leaf, e); err != nil {
			return nil, fmt.Errorf("replay: entry %d does not decode: %w", rec.GetSequence(), err)
		}
	}
	if e == nil {
		return nil, fmt.Errorf("replay: record %d carries no entry", rec.GetSequence())
	}
	if rec.GetSequence() != want || e.Sequence != want {
		return nil, fmt.Errorf("%w: expected entry %d, got record %d holding entry %d", ErrReplay, want, rec.GetSequence(), e.Sequence)
	}
	return e, nil
}

func (p *replayer) mismatch(e *trustfedv1.AuditEntry, format string, args ...any) {
	p.report.Mismatches = append(p.report.Mismatches, ReplayMismatch{Sequence: e.Sequence, Type: e.Type, Problem: fmt.Sprintf(format, args...)})
}

func (p *replayer) entry(e *trustfedv1.AuditEntry) {
	switch e.Type {
	case state.AuditDecision:
		p.decision(e)
	case state.AuditLevelChange:
		p.levelChange(e)
	case state.AuditCascade:
		p.cascade(e)
	case state.AuditAuthFailure, state.AuditCorrupt, state.AuditGatewayRefusal:
		// Nothing to rebuild: an authentication failure changes no state,
		// and a corrupt command was applied as nothing.
	default:
		p.command(e)
	}
}

// command applies one command entry as the log recorded it.
func (p *replayer) command(e *trustfedv1.AuditEntry) {
	if e.Redacted {
		p.report.Redacted++
		return
	}
	if len(e.Command) == 0 {
		p.mismatch(e, "a command entry without its command")
		return
	}
	if e.LogIndex <= p.last {
		p.mismatch(e, "log index %d does not follow the previous command's (%d)", e.LogIndex, p.last)
		return
	}
	env := &commandv1.Envelope{}
	if err := proto.Unmarshal(e.Command, env); err != nil {
		p.mismatch(e, "the command does not decode: %v", err)
		return
	}
	if name := state.CommandName(env.Type); name != e.Type {
		p.mismatch(e, "the entry's type is %s, its command is %s", e.Type, name)
	}
	res, _ := p.fsm.Apply(e.LogIndex, e.Command).(state.Result)
	p.report.Commands++
	p.last, p.lastEnv = e.LogIndex, env
	p.keep(e.LogIndex, p.fsm.Store().Read())
	got := ""
	if res.Err != nil {
		got = res.Err.Error()
	}
	switch {
	case got == e.Error:
	case e.Error == "":
		p.mismatch(e, "the log says the command applied; replayed, it is refused: %s", got)
	case got == "":
		p.mismatch(e, "the log says the command was refused (%s); replayed, it applies", e.Error)
	default:
		p.mismatch(e, "the log says the command was refused with %q; replayed, it is refused with %q", e.Error, got)
	}
}

// keep remembers the state after the command at index.
func (p *replayer) keep(index uint64, r *state.Reader) {
	if len(p.kept) < ReplayKeep {
		p.kept = append(p.kept, keptState{index: index, r: r})
		return
	}
	p.kept[p.head] = keptState{index: index, r: r}
	p.head = (p.head + 1) % len(p.kept)
}

// stateAt is the state after the last command at or before index.
func (p *replayer) stateAt(index uint64) (*state.Reader, error) {
	n := len(p.kept)
	at := func(i int) keptState { return p.kept[(p.head+i)%n] }
	// The first kept state after index; the one before it is the answer.
	i := sort.Search(n, func(i int) bool { return at(i).index > index })
	if i == 0 {
		return nil, fmt.Errorf("the state at index %d is no longer kept (replay keeps the last %d commands)", index, ReplayKeep)
	}
	return at(i - 1).r, nil
}

// decision re-evaluates a logged decision on the state it was computed at.
func (p *replayer) decision(e *trustfedv1.AuditEntry) {
	p.report.Decisions++
	var st trustfedv1.DecisionStatement
	if err := proto.Unmarshal(e.GetDecision().GetStatement(), &st); err != nil {
		p.mismatch(e, "the decision statement does not decode: %v", err)
		return
	}
	if st.Index >= e.LogIndex {
		p.mismatch(e, "decided at index %d, which is not before the decision was logged (index %d)", st.Index, e.LogIndex)
		return
	}
	r, err := p.stateAt(st.Index)
	if err != nil {
		p.mismatch(e, "%v", err)
		return
	}
	if err := Recheck(r, &st); err != nil {
		p.mismatch(e, "on the state at index %d: %v", st.Index, err)
		return
	}
	p.authorizationUse(e, r, &st)
}

// authorizationUse checks that an ALLOW relying on an authorisation whose
// uses are counted held a use of its own: one taken (Evaluate checked the
// state records it) and held by no other decision.
func (p *replayer) authorizationUse(e *trustfedv1.AuditEntry, r *state.Reader, st *trustfedv1.DecisionStatement) {
	if st.Decision != trustfedv1.Decision_DECISION_ALLOW || st.AuthorizationId == "" {
		return
	}
	if a, ok := r.Authorization(st.AuthorizationId); !ok || !state.Limited(a) {
		return
	}
	use := st.AuthorizationUseIndex
	if use == 0 {
		p.mismatch(e, "relied on authorization %s, whose uses are counted, without taking one", st.AuthorizationId)
		return
	}
	held := p.uses[st.AuthorizationId]
	if held == nil {
		held = map[uint64]uint64{}
		p.uses[st.AuthorizationId] = held
	}
	if prev, ok := held[use]; ok {
		p.mismatch(e, "the use of authorization %s taken at index %d was already held by the decision in entry %d", st.AuthorizationId, use, prev)
		return
	}
	held[use] = e.Sequence
}

// authorizationInReason finds the authorisation a request presented in the
// dual-authorisation reason that refused it (see state.AuthorizationCovers).
var authorizationInReason = regexp.MustCompile(`require dual authorisation: authorization (\S+) (?:is not granted|has expired|covers another interaction|does not exist)`)

// presentedAuthorization is the authorisation id the request carried:
// recorded as such since presented_authorization_id exists; statements
// signed before recorded it only when the decision relied on it, and when it
// was refused, the reason names it.
func presentedAuthorization(st *trustfedv1.DecisionStatement) string {
	if st.PresentedAuthorizationId != "" {
		return st.PresentedAuthorizationId
	}
	if st.AuthorizationId != "" {
		return st.AuthorizationId
	}
	for _, r := range st.Reasons {
		if r.GetCode() != policy.ReasonDualAuthorization {
			continue
		}
		if m := authorizationInReason.FindStringSubmatch(r.GetMessage()); m != nil {
			return m[1]
		}
	}
	return ""
}

// diffDecision lists how a logged statement differs from the decision the
// rebuilt state gives.
func diffDecision(st *trustfedv1.DecisionStatement, got *trustfedv1.CheckInteractionResponse, validUntil *timestamppb.Timestamp) []string {
	var out []string
	if st.Decision != got.Decision {
		out = append(out, fmt.Sprintf("decision %s, replayed %s", decisionName(st.Decision), decisionName(got.Decision)))
	}
	if !slices.EqualFunc(st.Reasons, got.Reasons, func(a, b *trustfedv1.Reason) bool { return proto.Equal(a, b) }) {
		out = append(out, fmt.Sprintf("reasons %s, replayed %s", reasonCodes(st.Reasons), reasonCodes(got.Reasons)))
	}
	levels := []struct {
		name      string
		want, got uint32
	}{
		{"effective level", st.EffectiveLevel, got.EffectiveLevel},
		{"from level", st.FromLevel, got.FromLevel},
		{"to level", st.ToLevel, got.ToLevel},
		{"required level", st.RequiredLevel, got.RequiredLevel},
	}
	for _, l := range levels {
		if l.want != l.got {
			out = append(out, fmt.Sprintf("%s %d, replayed %d", l.name, l.want, l.got))
		}
	}
	if st.RequiresDualAuthorization != got.RequiresDualAuthorization {
		out = append(out, fmt.Sprintf("requires dual authorisation %t, replayed %t", st.RequiresDualAuthorization, got.RequiresDualAuthorization))
	}
	if st.AgreementId != got.AgreementId {
		out = append(out, fmt.Sprintf("agreement %q, replayed %q", st.AgreementId, got.AgreementId))
	}
	if attestation.CapsSigned(st) {
		for _, c := range []struct {
			org       string
			want, got []*trustfedv1.LevelCap
		}{{st.FromOrganizationId, st.FromLevelCaps, got.FromLevelCaps}, {st.ToOrganizationId, st.ToLevelCaps, got.ToLevelCaps}} {
			if !slices.EqualFunc(c.want, c.got, func(a, b *trustfedv1.LevelCap) bool { return proto.Equal(a, b) }) {
				out = append(out, fmt.Sprintf("the caps on %s's level %s, replayed %s", c.org, capsString(c.want), capsString(c.got)))
			}
		}
	}
	if !proto.Equal(st.Controls, got.Controls) {
		out = append(out, "the resolved controls differ")
	}
	if st.AuthorizationId != got.AuthorizationId {
		out = append(out, fmt.Sprintf("authorization %q, replayed %q", st.AuthorizationId, got.AuthorizationId))
	}
	if !proto.Equal(st.ValidUntil, validUntil) {
		out = append(out, fmt.Sprintf("valid until %s, the freshness window gives %s", formatTS(st.ValidUntil), formatTS(validUntil)))
	}
	return out
}

func capsString(caps []*trustfedv1.LevelCap) string {
	parts := make([]string, len(caps))
	for i, c := range caps {
		parts[i] = fmt.Sprintf("%s=%d %q", c.GetSource(), c.GetLevel(), c.GetDetail())
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func decisionName(d trustfedv1.Decision) string {
	return strings.TrimPrefix(d.String(), "DECISION_")
}

func reasonCodes(rs []*trustfedv1.Reason) string {
	codes := make([]string, len(rs))
	for i, r := range rs {
		codes[i] = r.GetCode()
	}
	return "[" + strings.Join(codes, " ") + "]"
}

func formatTS(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "none"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
}

// levelChange checks a LEVEL_CHANGE entry against the state right after the
// command that caused it, at that command's time.
func (p *replayer) levelChange(e *trustfedv1.AuditEntry) {
	p.report.LevelChanges++
	lc := e.GetLevelChange()
	if e.LogIndex != p.last || p.lastEnv == nil {
		p.mismatch(e, "no replayed command at index %d caused it", e.LogIndex)
		return
	}
	r := p.fsm.Store().Read()
	o, ok := r.Organization(lc.GetOrganizationId())
	if !ok {
		p.mismatch(e, "organization %q does not exist in the rebuilt state", lc.GetOrganizationId())
		return
	}
	l := r.OrganizationLevel(o, p.lastEnv.GetTime().AsTime())
	if l.Level != lc.GetToLevel() {
		p.mismatch(e, "%s moved to level %d, the rebuilt state says %d", o.Id, lc.GetToLevel(), l.Level)
		return
	}
	if !slices.EqualFunc(l.Caps, lc.GetCaps(), func(a, b *trustfedv1.LevelCap) bool { return proto.Equal(a, b) }) {
		p.mismatch(e, "the caps on %s's level differ from the rebuilt state's", o.Id)
	}
}

// cascade checks that the cascade a CASCADE entry names was started by the
// command before it.
func (p *replayer) cascade(e *trustfedv1.AuditEntry) {
	p.report.Cascades++
	c, ok := p.fsm.Store().Read().Cascade(e.CascadeId)
	switch {
	case !ok:
		p.mismatch(e, "cascade %q is not in the rebuilt state", e.CascadeId)
	case c.CreateIndex != e.LogIndex:
		p.mismatch(e, "cascade %q was started at index %d in the rebuilt state, the log says %d", e.CascadeId, c.CreateIndex, e.LogIndex)
	}
}
