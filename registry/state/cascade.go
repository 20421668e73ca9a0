package state

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The notification graph and the revocation cascade (AG-783 R5, TC2). The
// state machine keeps, for every organisation, its partners: one directed
// edge per active agreement or open session in each direction, updated in
// the same transaction as the agreement or session, so that a revocation
// never has to discover anything. A command that revokes or suspends an
// organisation (or ends an agreement, changes a level, closes a session)
// records a cascade: the event and one delivery per partner, taken from the
// graph at that index. The leader's dispatcher delivers it and records the
// progress back through Raft (RecordDeliveries).

// Session bounds.
const (
	DefaultSessionTTL = 5 * time.Minute
	MinSessionTTL     = time.Second
	MaxSessionTTL     = 24 * time.Hour
)

// DefaultCascadeDeadline is AG-783's bound for notifying every partner.
const DefaultCascadeDeadline = 300 * time.Second

// ValidateSessionID checks the shape of a session id.
func ValidateSessionID(field, id string) error {
	if !ids.Session.Match(id) {
		return Invalid(field, "%q is not a session id (ses- and 16 hex digits)", truncate(id))
	}
	return nil
}

// ValidateEventID checks the shape of an event (cascade) id.
func ValidateEventID(field, id string) error {
	if !ids.Event.Match(id) {
		return Invalid(field, "%q is not an event id (evt- and 16 hex digits)", truncate(id))
	}
	return nil
}

// SessionID derives a session id from the request that opens it.
func SessionID(requestID string) string {
	sum := sha256.Sum256([]byte("session\x00" + requestID))
	return "ses-" + hex.EncodeToString(sum[:8])
}

func eventID(index uint64, kind trustfedv1.EventKind, org, ref string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "event\x00%d\x00%d\x00%s\x00%s", index, kind, org, ref))
	return "evt-" + hex.EncodeToString(sum[:8])
}

// edgeKey is the primary key of an edge: org, partner, ref.
func edgeKey(org, partner, ref string) string { return org + "\x00" + partner + "\x00" + ref }

// edgeIndex indexes edges by edgeKey; a prefix of org (and partner) finds
// an organisation's edges.
type edgeIndex struct{}

func (edgeIndex) FromObject(raw any) (bool, []byte, error) {
	e, ok := raw.(*commandv1.GraphEdge)
	if !ok {
		return false, nil, fmt.Errorf("edge index: unexpected %T", raw)
	}
	return true, []byte(edgeKey(e.OrganizationId, e.PartnerId, e.RefId) + "\x00"), nil
}

func (edgeIndex) FromArgs(args ...any) ([]byte, error) {
	parts := make([]string, len(args))
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("edge index: args must be strings")
		}
		parts[i] = s
	}
	return []byte(strings.Join(parts, "\x00") + "\x00"), nil
}

func (x edgeIndex) PrefixFromArgs(args ...any) ([]byte, error) { return x.FromArgs(args...) }

// sessionPartyIndex indexes a session under both of its organisations.
type sessionPartyIndex struct{}

func (sessionPartyIndex) FromObject(raw any) (bool, [][]byte, error) {
	s, ok := raw.(*trustfedv1.Session)
	if !ok {
		return false, nil, fmt.Errorf("session party index: unexpected %T", raw)
	}
	return true, [][]byte{[]byte(s.FromOrganizationId + "\x00"), []byte(s.ToOrganizationId + "\x00")}, nil
}

func (sessionPartyIndex) FromArgs(args ...any) ([]byte, error) {
	return stringArg("session party", args)
}

// targetIndex orders event targets by organisation, index, cascade id.
type targetIndex struct{}

func targetKey(org string, index uint64, cascade string) []byte {
	b := append([]byte(org), 0)
	b = binary.BigEndian.AppendUint64(b, index)
	return append(append(b, cascade...), 0)
}

func (targetIndex) FromObject(raw any) (bool, []byte, error) {
	t, ok := raw.(*commandv1.EventTarget)
	if !ok {
		return false, nil, fmt.Errorf("event target index: unexpected %T", raw)
	}
	return true, targetKey(t.OrganizationId, t.Index, t.CascadeId), nil
}

func (targetIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 3 {
		return nil, fmt.Errorf("event target index: want 3 args, got %d", len(args))
	}
	org, ok1 := args[0].(string)
	idx, ok2 := args[1].(uint64)
	cas, ok3 := args[2].(string)
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("event target index: want (string, uint64, string)")
	}
	return targetKey(org, idx, cas), nil
}

func addEdges(tx *memdb.Txn, a, b, ref string) error {
	for _, e := range []*commandv1.GraphEdge{{OrganizationId: a, PartnerId: b, RefId: ref}, {OrganizationId: b, PartnerId: a, RefId: ref}} {
		if err := tx.Insert(tableEdges, e); err != nil {
			return err
		}
	}
	return nil
}

func removeEdges(tx *memdb.Txn, a, b, ref string) error {
	for _, k := range [][3]string{{a, b, ref}, {b, a, ref}} {
		if _, err := tx.DeleteAll(tableEdges, "id", k[0], k[1], k[2]); err != nil {
			return err
		}
	}
	return nil
}

// Graph returns org's partners in id order, each with the agreements and
// sessions that link them.
func (r *Reader) Graph(org string) []*trustfedv1.GraphPartner {
	it, err := r.txn.Get(tableEdges, "id_prefix", org)
	if err != nil {
		return nil
	}
	var out []*trustfedv1.GraphPartner
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*commandv1.GraphEdge)
		if len(out) == 0 || out[len(out)-1].OrganizationId != e.PartnerId {
			out = append(out, &trustfedv1.GraphPartner{OrganizationId: e.PartnerId})
		}
		p := out[len(out)-1]
		if strings.HasPrefix(e.RefId, "ses-") {
			p.SessionIds = append(p.SessionIds, e.RefId)
		} else {
			p.AgreementIds = append(p.AgreementIds, e.RefId)
		}
	}
	return out
}

func partnerIDs(g []*trustfedv1.GraphPartner) []string {
	out := make([]string, len(g))
	for i, p := range g {
		out[i] = p.OrganizationId
	}
	return out
}

// Session returns a session.
func (r *Reader) Session(id string) (*trustfedv1.Session, bool) {
	return first[*trustfedv1.Session](r.txn, tableSessions, "id", id)
}

// Cascade returns a cascade.
func (r *Reader) Cascade(id string) (*trustfedv1.Cascade, bool) {
	return first[*trustfedv1.Cascade](r.txn, tableCascades, "id", id)
}

// CascadeIDsAt lists the ids of the cascades the command applied at index
// started (an admin change that revoked an organisation, say), in id order.
func (r *Reader) CascadeIDsAt(index uint64) []string {
	if index == 0 {
		return nil
	}
	it, err := r.txn.Get(tableCascades, "create", index)
	if err != nil {
		return nil
	}
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*trustfedv1.Cascade).Id)
	}
	slices.Sort(out)
	return out
}

// IncompleteCascades lists the cascades some partner has not acknowledged.
func (r *Reader) IncompleteCascades() []*trustfedv1.Cascade {
	out, _ := r.IncompleteCascadesWatch()
	return out
}

// IncompleteCascadesWatch is IncompleteCascades and a channel closed when
// the set may have changed.
func (r *Reader) IncompleteCascadesWatch() ([]*trustfedv1.Cascade, <-chan struct{}) {
	it, err := r.txn.Get(tableCascades, "incomplete", true)
	if err != nil {
		return nil, nil
	}
	var out []*trustfedv1.Cascade
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*trustfedv1.Cascade))
	}
	return out, it.WatchCh()
}

// CascadesFor lists the cascades that notify org with an event index after
// after, in index order, and a channel closed when the events addressed to
// anyone next change.
func (r *Reader) CascadesFor(org string, after uint64) ([]*trustfedv1.Cascade, <-chan struct{}) {
	it, err := r.txn.LowerBound(tableTargets, "id", org, after+1, "")
	if err != nil {
		return nil, nil
	}
	var out []*trustfedv1.Cascade
	for raw := it.Next(); raw != nil; raw = it.Next() {
		t := raw.(*commandv1.EventTarget)
		if t.OrganizationId != org {
			break
		}
		if c, ok := r.Cascade(t.CascadeId); ok {
			out = append(out, c)
		}
	}
	watch, err := r.txn.Get(tableTargets, "id")
	if err != nil {
		return out, nil
	}
	return out, watch.WatchCh()
}

// Cascades lists cascades in id order after the id after, at most limit,
// optionally only those about org.
func (r *Reader) Cascades(org, after string, limit int) (out []*trustfedv1.Cascade, next string) {
	var keep func(*trustfedv1.Cascade) bool
	if org != "" {
		keep = func(c *trustfedv1.Cascade) bool { return c.GetEvent().GetOrganizationId() == org }
	}
	return page(r.txn, tableCascades, after, limit, (*trustfedv1.Cascade).GetId, keep)
}

// newCascade records an event and a delivery for each target (the subject
// itself and duplicates left out). A cascade with no one to notify is
// complete at once.
func newCascade(tx *memdb.Txn, env *commandv1.Envelope, index uint64, ev *trustfedv1.Event, targets []string) error {
	ev.Time, ev.Index = stamp(env), index
	ev.Id = eventID(index, ev.Kind, ev.OrganizationId, ev.AgreementId+ev.SessionId)
	if o, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", ev.OrganizationId); ok {
		ev.Status, ev.DeclaredLevel = o.Status, o.DeclaredLevel
	}
	targets = slices.Clone(targets)
	slices.Sort(targets)
	targets = slices.Compact(targets)
	c := &trustfedv1.Cascade{Id: ev.Id, Event: ev, StartTime: stamp(env), CreateIndex: index, ModifyIndex: index}
	for _, t := range targets {
		if t != ev.OrganizationId {
			c.Deliveries = append(c.Deliveries, &trustfedv1.Delivery{OrganizationId: t})
		}
	}
	if len(c.Deliveries) == 0 {
		c.CompleteTime = stamp(env)
	}
	for _, d := range c.Deliveries {
		if err := tx.Insert(tableTargets, &commandv1.EventTarget{OrganizationId: d.OrganizationId, Index: index, CascadeId: c.Id}); err != nil {
			return err
		}
	}
	return tx.Insert(tableCascades, c)
}

// agreementTerminated records the AGREEMENT_TERMINATION event of ag to both
// parties (one of them may be the one that ended it; it is told too, unless
// it is the event's subject).
func agreementTerminated(tx *memdb.Txn, env *commandv1.Envelope, index uint64, ag *trustfedv1.Agreement, subject, reason string) error {
	ev := &trustfedv1.Event{Kind: trustfedv1.EventKind_EVENT_KIND_AGREEMENT_TERMINATION, OrganizationId: subject, Reason: reason, AgreementId: ag.Id}
	return newCascade(tx, env, index, ev, []string{ag.OrganizationAId, ag.OrganizationBId})
}

// endSessions ends org's open sessions (or only those under agreement, if
// given) with status st.
func endSessions(tx *memdb.Txn, env *commandv1.Envelope, index uint64, org, agreement string, st trustfedv1.SessionStatus, reason string) error {
	it, err := tx.Get(tableSessions, "party", org)
	if err != nil {
		return err
	}
	var open []*trustfedv1.Session
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if s := raw.(*trustfedv1.Session); s.Status == trustfedv1.SessionStatus_SESSION_STATUS_OPEN && (agreement == "" || s.AgreementId == agreement) {
			open = append(open, s)
		}
	}
	for _, s := range open {
		if err := endSession(tx, env, index, s, st, reason); err != nil {
			return err
		}
	}
	return nil
}

func endSession(tx *memdb.Txn, env *commandv1.Envelope, index uint64, cur *trustfedv1.Session, st trustfedv1.SessionStatus, reason string) error {
	s := proto.CloneOf(cur)
	s.Status, s.EndTime, s.EndReason, s.ModifyIndex = st, stamp(env), reason, index
	if err := tx.Insert(tableSessions, s); err != nil {
		return err
	}
	return removeEdges(tx, s.FromOrganizationId, s.ToOrganizationId, s.Id)
}

// cutOff runs the cascade of a suspension or revocation of org: the
// partners are read from the graph first, then org's agreements and
// sessions end, then the event is recorded for those partners.
func cutOff(tx *memdb.Txn, env *commandv1.Envelope, index uint64, org string, st trustfedv1.OrganizationStatus, reason string) error {
	partners := partnerIDs((&Reader{txn: tx}).Graph(org))
	if _, err := terminateBrokenAgreements(tx, env, index, org); err != nil {
		return err
	}
	if err := endSessions(tx, env, index, org, "", trustfedv1.SessionStatus_SESSION_STATUS_TERMINATED, fmt.Sprintf("%s is %v", org, st)); err != nil {
		return err
	}
	kind := trustfedv1.EventKind_EVENT_KIND_SUSPENSION
	if st == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED {
		kind = trustfedv1.EventKind_EVENT_KIND_REVOCATION
	}
	return newCascade(tx, env, index, &trustfedv1.Event{Kind: kind, OrganizationId: org, Reason: reason}, partners)
}

// ValidateSessionTTL checks a session TTL (nil: the default).
func ValidateSessionTTL(field string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return DefaultSessionTTL, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, Invalid(field, "%v", err)
	}
	if v := d.AsDuration(); v < MinSessionTTL || v > MaxSessionTTL {
		return 0, Invalid(field, "%s is outside %s..%s", v, MinSessionTTL, MaxSessionTTL)
	}
	return d.AsDuration(), nil
}

// CheckOpenSession checks that a session may open at now: both parties
// active, distinct, with an agreement in force between them (the leader
// has also run the full decision before proposing).
func CheckOpenSession(r *Reader, c *commandv1.OpenSession, now time.Time) (*trustfedv1.Agreement, error) {
	if err := ValidateSessionID("session_id", c.SessionId); err != nil {
		return nil, err
	}
	if _, err := ValidateSessionTTL("ttl", c.Ttl); err != nil {
		return nil, err
	}
	if c.FromOrganizationId == c.ToOrganizationId {
		return nil, Invalid("to_organization_id", "a session needs two different organisations")
	}
	for _, f := range []struct{ field, id string }{{"from_organization_id", c.FromOrganizationId}, {"to_organization_id", c.ToOrganizationId}} {
		o, ok := r.Organization(f.id)
		if !ok {
			return nil, NotFound(f.field, "organization %q does not exist", f.id)
		}
		if o.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
			return nil, FailedPrecondition(f.field, "organization %q is %v", f.id, o.Status)
		}
	}
	ag, ok := r.ActiveAgreement(c.FromOrganizationId, c.ToOrganizationId)
	if !ok {
		return nil, FailedPrecondition("to_organization_id", "no active agreement between %q and %q", c.FromOrganizationId, c.ToOrganizationId)
	}
	if reason, ended := r.AgreementEnded(ag, now); ended {
		return nil, FailedPrecondition("to_organization_id", "%s", reason)
	}
	if _, ok := r.Session(c.SessionId); ok {
		return nil, AlreadyExists("session_id", "session %s already exists", c.SessionId)
	}
	return ag, nil
}

func applyOpenSession(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.OpenSession
	if err := decode(env, &c); err != nil {
		return err
	}
	ag, err := CheckOpenSession(&Reader{txn: tx}, &c, env.Time.AsTime())
	if err != nil {
		return err
	}
	ttl, _ := ValidateSessionTTL("ttl", c.Ttl)
	s := &trustfedv1.Session{
		Id: c.SessionId, FromOrganizationId: c.FromOrganizationId, ToOrganizationId: c.ToOrganizationId, Action: c.Action,
		Status: trustfedv1.SessionStatus_SESSION_STATUS_OPEN, Ttl: durationpb.New(ttl), OpenTime: stamp(env),
		ExpireTime: timestamppb.New(env.Time.AsTime().Add(ttl)), AgreementId: ag.Id, CreateIndex: index, ModifyIndex: index,
	}
	if err := tx.Insert(tableSessions, s); err != nil {
		return err
	}
	return addEdges(tx, s.FromOrganizationId, s.ToOrganizationId, s.Id)
}

// openSessionOf returns the session if it is open at now and org is one of
// its parties.
func openSessionOf(r *Reader, id, org string, now time.Time) (*trustfedv1.Session, error) {
	if err := ValidateSessionID("session_id", id); err != nil {
		return nil, err
	}
	s, ok := r.Session(id)
	if !ok {
		return nil, NotFound("session_id", "session %s does not exist", id)
	}
	if org != s.FromOrganizationId && org != s.ToOrganizationId {
		return nil, Invalid("organization_id", "%q is not a party to session %s", org, id)
	}
	if s.Status != trustfedv1.SessionStatus_SESSION_STATUS_OPEN {
		return nil, FailedPrecondition("session_id", "session %s is %v: %s", id, s.Status, s.EndReason)
	}
	if !now.Before(s.ExpireTime.AsTime()) {
		return nil, FailedPrecondition("session_id", "session %s expired at %s", id, s.ExpireTime.AsTime().UTC().Format(time.RFC3339))
	}
	return s, nil
}

func applyHeartbeatSession(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.HeartbeatSession
	if err := decode(env, &c); err != nil {
		return err
	}
	cur, err := openSessionOf(&Reader{txn: tx}, c.SessionId, c.OrganizationId, env.Time.AsTime())
	if err != nil {
		return err
	}
	s := proto.CloneOf(cur)
	s.ExpireTime = timestamppb.New(env.Time.AsTime().Add(s.Ttl.AsDuration()))
	s.ModifyIndex = index
	return tx.Insert(tableSessions, s)
}

func applyCloseSession(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.CloseSession
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateReason("reason", c.Reason); err != nil {
		return err
	}
	cur, err := openSessionOf(&Reader{txn: tx}, c.SessionId, c.OrganizationId, env.Time.AsTime())
	if err != nil {
		return err
	}
	if err := endSession(tx, env, index, cur, trustfedv1.SessionStatus_SESSION_STATUS_CLOSED, c.Reason); err != nil {
		return err
	}
	ev := &trustfedv1.Event{Kind: trustfedv1.EventKind_EVENT_KIND_SESSION_END, OrganizationId: c.OrganizationId, Reason: c.Reason, SessionId: cur.Id, AgreementId: cur.AgreementId}
	return newCascade(tx, env, index, ev, []string{cur.FromOrganizationId, cur.ToOrganizationId})
}

func applySweep(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.Sweep
	if err := decode(env, &c); err != nil {
		return err
	}
	sessions, agreements, err := sweepTargets(&Reader{txn: tx}, &c, env.Time.AsTime())
	if err != nil {
		return err
	}
	for _, s := range sessions {
		if err := endSession(tx, env, index, s, trustfedv1.SessionStatus_SESSION_STATUS_EXPIRED, "not heartbeated within its TTL"); err != nil {
			return err
		}
	}
	for _, b := range agreements {
		if err := terminate(tx, env, index, b.ag, "condition", b.reason); err != nil {
			return err
		}
		if err := agreementTerminated(tx, env, index, b.ag, "", b.reason); err != nil {
			return err
		}
	}
	return nil
}

// Deliveries.

func applyRecordDeliveries(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.RecordDeliveries
	if err := decode(env, &c); err != nil {
		return err
	}
	if len(c.Updates) == 0 {
		return Invalid("updates", "is empty")
	}
	changed := map[string]*trustfedv1.Cascade{}
	for i, u := range c.Updates {
		field := fmt.Sprintf("updates[%d]", i)
		cas, ok := changed[u.CascadeId]
		if !ok {
			cur, found := first[*trustfedv1.Cascade](tx, tableCascades, "id", u.CascadeId)
			if !found {
				return NotFound(field+".cascade_id", "cascade %q does not exist", u.CascadeId)
			}
			cas = proto.CloneOf(cur)
			changed[u.CascadeId] = cas
		}
		d, ok := FindDelivery(cas, u.GetDelivery().GetOrganizationId())
		if !ok {
			return Invalid(field+".delivery.organization_id", "%q is not notified by cascade %s", u.GetDelivery().GetOrganizationId(), u.CascadeId)
		}
		mergeDelivery(d, u.Delivery)
	}
	ids := make([]string, 0, len(changed))
	for id := range changed {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic order of writes
	for _, id := range ids {
		cas := changed[id]
		var acked uint32
		for _, d := range cas.Deliveries {
			if d.AckTime != nil {
				acked++
			}
		}
		cas.Acked, cas.ModifyIndex = acked, index
		if cas.CompleteTime == nil && int(acked) == len(cas.Deliveries) {
			cas.CompleteTime = stamp(env)
		}
		if err := tx.Insert(tableCascades, cas); err != nil {
			return err
		}
	}
	return nil
}

// FindDelivery returns org's delivery in a cascade (deliveries are sorted by
// organisation id).
func FindDelivery(c *trustfedv1.Cascade, org string) (*trustfedv1.Delivery, bool) {
	i, ok := slices.BinarySearchFunc(c.Deliveries, org, func(d *trustfedv1.Delivery, id string) int { return strings.Compare(d.OrganizationId, id) })
	if !ok {
		return nil, false
	}
	return c.Deliveries[i], true
}

// mergeDelivery folds an update into d monotonically: times once set stay,
// attempts only grow, an ack is recorded once with its channel.
func mergeDelivery(d, u *trustfedv1.Delivery) {
	setOnce := func(dst **timestamppb.Timestamp, v *timestamppb.Timestamp) {
		if *dst == nil && v != nil {
			*dst = v
		}
	}
	setOnce(&d.DispatchTime, u.DispatchTime)
	setOnce(&d.FirstAttemptTime, u.FirstAttemptTime)
	setOnce(&d.EscalateTime, u.EscalateTime)
	if u.LastAttemptTime != nil && (d.LastAttemptTime == nil || u.LastAttemptTime.AsTime().After(d.LastAttemptTime.AsTime())) {
		d.LastAttemptTime = u.LastAttemptTime
	}
	d.Attempts = max(d.Attempts, u.Attempts)
	if d.AckTime == nil && u.AckTime != nil {
		d.AckTime, d.Channel = u.AckTime, u.Channel
	}
	if u.LastError != "" && d.AckTime == nil {
		d.LastError = truncate(u.LastError)
	}
}
