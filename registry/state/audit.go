package state

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Audit entry types that are not command names (commands are audited under
// their CommandType name without the COMMAND_TYPE_ prefix).
const (
	AuditDecision    = "DECISION"
	AuditAuthFailure = "AUTH_FAILURE"
	// AuditGatewayRefusal: a member gateway refused a message (reported
	// by the member, ReportRefusals).
	AuditGatewayRefusal = "GATEWAY_REFUSAL"
	AuditLevelChange    = "LEVEL_CHANGE"
	AuditCascade        = "CASCADE"
	AuditCorrupt        = "CORRUPT_COMMAND"
)

// Index labels of audit entries (see AuditLog).
const (
	LabelOrg  = "org:"
	LabelType = "type:"
	LabelMode = "mode:"
)

// AuditLeaf is one audit log entry as the log stores it.
type AuditLeaf struct {
	Data   []byte
	Time   time.Time
	Labels []string
}

// AuditBatch is the entries one Raft log entry produced.
type AuditBatch struct {
	LogIndex uint64
	Leaves   []AuditLeaf
}

// AuditLog is the on-disk Merkle log the state machine appends to
// (registry/audit implements it). Appends come from the apply goroutine
// only; AppendBatches must skip batches at or below LastIndex, which makes
// re-applying the Raft log after a restart idempotent.
type AuditLog interface {
	Size() uint64
	LastIndex() uint64
	AppendBatches(batches []AuditBatch) (uint64, error)
	RootAt(size uint64) ([]byte, error)
	Range(from, to uint64, fn func(seq uint64, leaf AuditLeaf) error) error
	Replace(lastIndex uint64, wantRoot []byte, next func() (AuditLeaf, bool, error)) error
	// Sync makes every append durable. The log may skip fsync on appends
	// (they are re-derived from the Raft log after a crash); Snapshot syncs
	// it before Raft compacts the entries it was derived from.
	Sync() error
}

// auditor is the FSM's audit side: entries built while a Raft batch is
// applied wait in pending and are written in one transaction at its end.
type auditor struct {
	log      AuditLog
	pending  []AuditBatch
	npending uint64
	lastTime time.Time
	fault    atomic.Pointer[string]
	// events are the APPEND_AUDIT command being applied, decoded once by
	// applyAppendAudit; batchNode the server that sent it.
	events    []*commandv1.AuditEvent
	batchNode string
	// batchRaw and batchSt: its decision statements (see
	// handOverDecisions).
	batchRaw [][]byte
	batchSt  []*trustfedv1.DecisionStatement
}

// AttachAudit makes the FSM write an audit entry for every command it
// applies from now on. Call it before the FSM applies anything.
func (f *FSM) AttachAudit(l AuditLog) error {
	a := &auditor{log: l}
	if n := l.Size(); n > 0 {
		if err := l.Range(n-1, n, func(_ uint64, leaf AuditLeaf) error {
			a.lastTime = leaf.Time
			return nil
		}); err != nil {
			return fmt.Errorf("read the last audit entry: %w", err)
		}
	}
	f.audit = a
	return nil
}

// AuditLog returns the attached audit log (nil when auditing is off).
func (f *FSM) AuditLog() AuditLog {
	if f.audit == nil {
		return nil
	}
	return f.audit.log
}

// AuditFault is non-empty when this replica found its audit log disagreeing
// with a signed checkpoint the cluster committed: its log was changed on
// disk (or its disk lies). The node keeps serving its state but must not be
// trusted for audit answers until its log is rebuilt from a healthy peer.
func (f *FSM) AuditFault() string {
	if f.audit == nil {
		return ""
	}
	if p := f.audit.fault.Load(); p != nil {
		return *p
	}
	return ""
}

// ReportAuditFault records a fault found outside the state machine (the
// node's start-up verification of its log).
func (f *FSM) ReportAuditFault(msg string) {
	if f.audit != nil {
		f.audit.fault.Store(&msg)
	}
}

// EndBatch writes the audit entries of the Raft batch just applied, in one
// transaction, before the batch's results are handed back: an answer is
// never given for a command whose audit entry is not on disk. A write
// failure is fatal: a replica that cannot keep its log must stop rather
// than go on without it (restarting replays the Raft log into it).
func (f *FSM) EndBatch() {
	a := f.audit
	if a == nil || len(a.pending) == 0 {
		return
	}
	if _, err := a.log.AppendBatches(a.pending); err != nil {
		panic(fmt.Sprintf("state: cannot write the audit log: %v", err))
	}
	clear(a.pending)
	a.pending = a.pending[:0]
	a.npending = 0
}

// auditing reports whether the command at index still has to be audited
// (false when auditing is off, and for entries the log already holds:
// Raft replays entries after the last snapshot on restart).
func (f *FSM) auditing(index uint64) bool {
	return f.audit != nil && index > f.audit.log.LastIndex()
}

// size is the number of audit entries so far, written or pending.
func (a *auditor) size() uint64 { return a.log.Size() + a.npending }

// add appends e (stamped with its sequence number, log time and compliance
// views) to the pending batch of Raft index `index`. e.Time, when set, is
// the caller's to reuse: add overwrites it.
func (a *auditor) add(index uint64, t time.Time, e *trustfedv1.AuditEntry) uint64 {
	if t.Before(a.lastTime) {
		t = a.lastTime
	}
	a.lastTime = t
	e.Sequence = a.size()
	e.LogIndex = index
	if e.Time == nil {
		e.Time = &timestamppb.Timestamp{}
	}
	e.Time.Seconds, e.Time.Nanos = t.Unix(), int32(t.Nanosecond()) // timestamppb.New(t)
	if e.Compliance == nil {
		e.Compliance = complianceOf(e)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	mustDo(err)
	labels := make([]string, 0, len(e.OrganizationIds)+1+len(e.Compliance))
	labels = appendOrgLabels(labels, e.OrganizationIds)
	labels = append(labels, typeLabel(e.Type))
	for _, m := range e.Compliance {
		labels = append(labels, modeLabel(m))
	}
	if n := len(a.pending); n == 0 || a.pending[n-1].LogIndex != index {
		a.pending = append(a.pending, AuditBatch{LogIndex: index})
	}
	b := &a.pending[len(a.pending)-1]
	b.Leaves = append(b.Leaves, AuditLeaf{Data: data, Time: t, Labels: labels})
	a.npending++
	return e.Sequence
}

// appendOrgLabels appends LabelOrg+id for each of ids, cut from one
// string (one allocation for all of them, not one each: this runs for
// every audited check).
func appendOrgLabels(labels, ids []string) []string {
	n := 0
	for _, id := range ids {
		n += len(LabelOrg) + len(id)
	}
	if n == 0 {
		return labels
	}
	var b strings.Builder
	b.Grow(n)
	for _, id := range ids {
		b.WriteString(LabelOrg)
		b.WriteString(id)
	}
	all := b.String()
	for _, id := range ids {
		k := len(LabelOrg) + len(id)
		labels, all = append(labels, all[:k]), all[k:]
	}
	return labels
}

// typeLabels and modeLabels are LabelType+type and LabelMode+name made
// once for every audit type and compliance mode there is.
var (
	typeLabels = func() map[string]string {
		m := map[string]string{}
		for _, t := range []string{AuditDecision, AuditAuthFailure, AuditGatewayRefusal, AuditLevelChange, AuditCascade, AuditCorrupt} {
			m[t] = LabelType + t
		}
		for v := range commandv1.CommandType_name {
			t := CommandName(commandv1.CommandType(v))
			m[t] = LabelType + t
		}
		return m
	}()
	modeLabels = func() map[trustfedv1.ComplianceMode]string {
		m := map[trustfedv1.ComplianceMode]string{}
		for v := range trustfedv1.ComplianceMode_name {
			m[trustfedv1.ComplianceMode(v)] = LabelMode + ModeName(trustfedv1.ComplianceMode(v))
		}
		return m
	}()
)

// typeLabel is LabelType+t.
func typeLabel(t string) string {
	if l, ok := typeLabels[t]; ok {
		return l
	}
	return LabelType + t
}

// modeLabel is LabelMode+ModeName(m).
func modeLabel(m trustfedv1.ComplianceMode) string {
	if l, ok := modeLabels[m]; ok {
		return l
	}
	return LabelMode + ModeName(m)
}

// ModeName is a compliance mode's short name ("HIPAA", "SOC2", "GDPR").
func ModeName(m trustfedv1.ComplianceMode) string {
	return strings.TrimPrefix(m.String(), "COMPLIANCE_MODE_")
}

// IsAuditType reports whether t is a type an audit entry can have: a
// command's name or one of the Audit* types.
func IsAuditType(t string) bool {
	switch t {
	case AuditDecision, AuditAuthFailure, AuditLevelChange, AuditCascade, AuditCorrupt, AuditGatewayRefusal:
		return true
	}
	v, ok := commandv1.CommandType_value["COMMAND_TYPE_"+t]
	return ok && v != int32(commandv1.CommandType_COMMAND_TYPE_UNSPECIFIED)
}

// CommandName is the audit type of a command ("REGISTER_ORGANIZATION").
func CommandName(t commandv1.CommandType) string {
	return strings.TrimPrefix(t.String(), "COMMAND_TYPE_")
}

// auditCommand records one applied (or refused) command, and what it set
// off: level changes and cascades. before is the state before the command,
// tx the state after it (tracking its changes).
func (f *FSM) auditCommand(before, tx *memdb.Txn, env *commandv1.Envelope, raw []byte, index uint64, applyErr error) (first uint64) {
	a := f.audit
	first = a.size()
	t := env.GetTime().AsTime()
	switch commands[env.Type].audit {
	case auditNot:
		// The log's own metadata: auditing it would grow the log forever.
		return first
	case auditAsEvents:
		if events := a.events; applyErr == nil {
			a.events = nil
			f.auditEvents(tx, env, events, index)
			return first
		}
	}
	ps := newPseudonymizer(tx)
	orgs := map[string]struct{}{}
	if msg := newPayload(env.Type); msg != nil && proto.Unmarshal(env.Payload, msg) == nil {
		collectOrgs(msg.ProtoReflect(), orgs)
	}
	changes := tx.Changes()
	for _, ch := range changes {
		orgsOfChange(ch, orgs)
	}
	sum := sha256.Sum256(raw)
	e := &trustfedv1.AuditEntry{
		Type:            CommandName(env.Type),
		OrganizationIds: sortedKeys(orgs),
		Principal:       ps.name(env.Principal),
		CommandSha256:   sum[:],
	}
	if applyErr != nil {
		e.Error = applyErr.Error()
	}
	e.Command, e.Redacted = redactCommand(env, ps)
	a.add(index, t, e)
	if applyErr != nil {
		return first
	}
	f.auditLevelChanges(before, tx, changes, orgs, index, t)
	for _, ch := range changes {
		c, ok := ch.After.(*trustfedv1.Cascade)
		if ch.Table != tableCascades || !ok || ch.Before != nil {
			continue
		}
		named := map[string]struct{}{c.GetEvent().GetOrganizationId(): {}}
		for _, d := range c.Deliveries {
			named[d.OrganizationId] = struct{}{}
		}
		a.add(index, t, &trustfedv1.AuditEntry{
			Type:            AuditCascade,
			OrganizationIds: sortedKeys(named),
			Principal:       ps.name(env.Principal),
			CascadeId:       c.Id,
			CascadeEvent:    c.Event, // only read: add encodes the entry at once
		})
	}
	return first
}

// auditEvents records the decisions and authentication failures an
// APPEND_AUDIT command carries, one entry each, in order.
func (f *FSM) auditEvents(tx *memdb.Txn, env *commandv1.Envelope, events []*commandv1.AuditEvent, index uint64) {
	ps := newPseudonymizer(tx)
	t := env.GetTime().AsTime()
	// One entry, time and pair of organisations for all: add encodes the
	// entry at once and keeps nothing of it.
	e, ts, pair := &trustfedv1.AuditEntry{}, &timestamppb.Timestamp{}, make([]string, 0, 2)
	for _, ev := range events {
		e.Reset()
		e.Time = ts
		e.Principal = ps.name(ev.Principal)
		switch x := ev.Event.(type) {
		case *commandv1.AuditEvent_Decision:
			e.Type = AuditDecision
			e.Decision = x.Decision
			st := &trustfedv1.DecisionStatement{}
			decoded := st
			if proto.Unmarshal(x.Decision.GetStatement(), st) == nil {
				e.OrganizationIds = appendSortedPair(pair[:0], st.FromOrganizationId, st.ToOrganizationId)
			} else {
				decoded = nil // the cosigner refuses a statement that does not decode
			}
			f.audit.collectDecision(x.Decision.GetStatement(), decoded)
			e.Compliance = decisionViews(st.DataTypes) // decoded once, here
		case *commandv1.AuditEvent_GatewayRefusal:
			e.Type = AuditGatewayRefusal
			g := x.GatewayRefusal
			e.OrganizationIds = validOrganizationIDs([]string{g.OrganizationId, g.PartnerOrganizationId})
			e.GatewayRefusal = g
		case *commandv1.AuditEvent_AuthFailure:
			e.Type = AuditAuthFailure
			af := x.AuthFailure // decoded for this command alone: ours to change
			af.Identity, af.Peer = ps.name(af.Identity), ps.name(af.Peer)
			af.OrganizationIds = validOrganizationIDs(af.OrganizationIds)
			e.OrganizationIds = af.OrganizationIds
			e.AuthFailure = af
		}
		f.audit.add(index, t, e)
	}
}

// maxAuthFailureOrgs bounds the organisations one refused call is filed
// under.
const maxAuthFailureOrgs = 4

// validOrganizationIDs keeps, sorted and once each, the well-formed
// organisation ids of a refused call (a caller controls what its request
// names: nothing else becomes an index label).
func validOrganizationIDs(ids []string) []string {
	var out []string
	for _, id := range ids {
		if ValidateOrganizationID("organization_id", id) == nil && !slices.Contains(out, id) && len(out) < maxAuthFailureOrgs {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// auditLevelChanges records every organisation whose level the command
// moved (at the command's time), with the caps that bound the new level.
// Candidates are the organisations the command named or changed, and those
// holding a passport of an issuer, or with a serial, the command changed.
func (f *FSM) auditLevelChanges(before, tx *memdb.Txn, changes memdb.Changes, named map[string]struct{}, index uint64, t time.Time) {
	cands := map[string]struct{}{}
	for o := range named {
		cands[o] = struct{}{}
	}
	after := &Reader{txn: tx}
	for _, ch := range changes {
		var issuer string
		switch ch.Table {
		case tableIssuers:
			if is, ok := ch.After.(*trustfedv1.Issuer); ok {
				issuer = is.Id
			}
		case tableRevoked:
			if rp, ok := ch.After.(*commandv1.RevokedPassport); ok {
				for _, o := range after.organizationsWithSerial(rp.Serial) {
					cands[o] = struct{}{}
				}
			}
		case tablePolicy:
			// The onboarding cap applies to every onboarding member.
			for _, o := range after.onboarding(t) {
				cands[o] = struct{}{}
			}
		}
		if issuer != "" {
			for _, o := range after.organizationsOfIssuer(issuer) {
				cands[o] = struct{}{}
			}
		}
	}
	prev := &Reader{txn: before}
	for _, id := range sortedKeys(cands) {
		o, ok := after.Organization(id)
		if !ok {
			continue
		}
		now := after.OrganizationLevel(o, t)
		was := uint32(0)
		if po, ok := prev.Organization(id); ok {
			was = prev.OrganizationLevel(po, t).Level
		}
		if was == now.Level {
			continue
		}
		f.audit.add(index, t, &trustfedv1.AuditEntry{
			Type:            AuditLevelChange,
			OrganizationIds: []string{id},
			LevelChange:     &trustfedv1.AuditLevelChange{OrganizationId: id, FromLevel: was, ToLevel: now.Level, Caps: now.Caps},
		})
	}
}

func (r *Reader) organizationsOfIssuer(issuer string) []string {
	it, err := r.txn.Get(tableOrganizations, "issuer", issuer)
	mustDo(err)
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*trustfedv1.Organization).Id)
	}
	return out
}

func (r *Reader) organizationsWithSerial(serial string) []string {
	it, err := r.txn.Get(tableOrganizations, "id")
	mustDo(err)
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if o := raw.(*trustfedv1.Organization); o.GetPassport().GetSerial() == serial {
			out = append(out, o.Id)
		}
	}
	return out
}

func (r *Reader) onboarding(now time.Time) []string {
	it, err := r.txn.Get(tableOrganizations, "id")
	mustDo(err)
	var out []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if u := raw.(*trustfedv1.Organization).GetOnboardingUntil(); u != nil && now.Before(u.AsTime()) {
			out = append(out, raw.(*trustfedv1.Organization).Id)
		}
	}
	return out
}

// orgsOfChange adds the organisations a changed object concerns. Cascades
// are left out on purpose: their own CASCADE entry names every partner once,
// and a progress update must not name thousands of them again.
func orgsOfChange(ch memdb.Change, into map[string]struct{}) {
	obj := ch.After
	if obj == nil {
		obj = ch.Before
	}
	switch o := obj.(type) {
	case *trustfedv1.Organization:
		into[o.Id] = struct{}{}
	case *trustfedv1.MemberNode:
		into[o.OrganizationId] = struct{}{}
	case *commandv1.Token:
		// A revocation names only the token id; the row names its organisation.
		into[o.OrganizationId] = struct{}{}
	case *trustfedv1.Agreement, *trustfedv1.Session, *trustfedv1.Authorization, *trustfedv1.AdminChangeRecord:
		collectOrgs(o.(proto.Message).ProtoReflect(), into)
	}
}

// collectOrgs walks m for organisation ids: string fields named
// organization_id, *_organization_id, organization_a_id/_b_id or
// partner_id, and repeated strings named organization_ids.
func collectOrgs(m protoreflect.Message, into map[string]struct{}) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		switch {
		case fd.Kind() == protoreflect.StringKind && fd.IsList() && name == "organization_ids":
			l := v.List()
			for i := range l.Len() {
				if s := l.Get(i).String(); s != "" {
					into[s] = struct{}{}
				}
			}
		case fd.Kind() == protoreflect.StringKind && !fd.IsList() && !fd.IsMap() && isOrgField(name):
			if s := v.String(); s != "" {
				into[s] = struct{}{}
			}
		case fd.Kind() == protoreflect.MessageKind && fd.IsList():
			l := v.List()
			for i := range l.Len() {
				collectOrgs(l.Get(i).Message(), into)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			collectOrgs(v.Message(), into)
		}
		return true
	})
}

func isOrgField(name string) bool {
	return name == "organization_id" || strings.HasSuffix(name, "_organization_id") ||
		name == "organization_a_id" || name == "organization_b_id" || name == "partner_id"
}

// appendSortedPair appends sortedKeys of the set {a, b} to out, without
// making the set.
func appendSortedPair(out []string, a, b string) []string {
	switch {
	case a == "" && b == "":
		return out
	case a == "" || a == b:
		return append(out, b)
	case b == "":
		return append(out, a)
	case b < a:
		return append(out, b, a)
	}
	return append(out, a, b)
}

func sortedKeys(m map[string]struct{}) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// redactCommand returns the envelope to log: secrets removed (token hashes,
// the registry's private key: redacted is then true) and, in GDPR mode, the
// principal pseudonymised.
func redactCommand(env *commandv1.Envelope, ps pseudonymizer) ([]byte, bool) {
	out := proto.Clone(env).(*commandv1.Envelope)
	out.Principal = ps.name(env.Principal)
	redacted := false
	if c := commands[env.Type]; c.redact != nil {
		redacted = true
		msg := newPayload(env.Type)
		out.Payload = nil
		if proto.Unmarshal(env.Payload, msg) == nil && c.redact(msg) {
			out.Payload, _ = proto.MarshalOptions{Deterministic: true}.Marshal(msg)
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(out)
	mustDo(err)
	return b, redacted
}

// redactPutToken removes the token's secret hash. It reports false, and the
// payload is then left out altogether, when there is no token.
func redactPutToken(m proto.Message) bool {
	c, ok := m.(*commandv1.PutToken)
	if !ok || c.Token == nil {
		return false
	}
	c.Token.SecretSha256 = nil
	return true
}

// redactPutSigningKey removes the registry's private key, like redactPutToken.
func redactPutSigningKey(m proto.Message) bool {
	c, ok := m.(*commandv1.PutSigningKey)
	if !ok || c.Key == nil {
		return false
	}
	c.Key.PrivateSeed = nil
	return true
}

// pseudonymizer replaces personal identifiers (principals, presented
// identities, addresses) by keyed hashes when the federation runs the audit
// log in GDPR mode. The key is derived from the registry's first signing
// key, which only registry nodes hold: the same person gets the same
// pseudonym in every entry (so a regulator can follow one), and nobody
// without the key can recover or confirm a name by hashing guesses.
type pseudonymizer struct {
	key []byte // nil: not in GDPR mode
}

func newPseudonymizer(tx *memdb.Txn) pseudonymizer {
	r := &Reader{txn: tx}
	if !slices.Contains(r.FederationPolicy().GetComplianceModes(), trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR) {
		return pseudonymizer{}
	}
	var seed []byte
	if keys := r.SigningKeys(); len(keys) > 0 {
		if len(keys[0].PseudonymKey) > 0 {
			// Kept when the seed was retired, or random at bootstrap.
			return pseudonymizer{key: keys[0].PseudonymKey}
		}
		seed = keys[0].PrivateSeed
	}
	return pseudonymizer{key: pseudonymKeyOf(seed)}
}

// pseudonymKeyOf derives the pseudonym key from the registry key's seed
// (RETIRE_REGISTRY_SEED keeps it, so pseudonyms stay the same).
func pseudonymKeyOf(seed []byte) []byte {
	h := sha256.New()
	h.Write([]byte("trustfed/audit-pseudonym/v1\x00"))
	h.Write(seed)
	return h.Sum(nil)
}

func (p pseudonymizer) name(s string) string {
	if p.key == nil || s == "" {
		return s
	}
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(s))
	return "pseudonym:" + hex.EncodeToString(m.Sum(nil)[:16])
}

// personalTypes are the PII types that are personal data (GDPR) and HIPAA
// identifiers; the others are secrets (API keys, tokens, passwords).
var personalTypes = map[trustfedv1.PiiType]bool{
	trustfedv1.PiiType_PII_TYPE_EMAIL:          true,
	trustfedv1.PiiType_PII_TYPE_SSN:            true,
	trustfedv1.PiiType_PII_TYPE_CREDIT_CARD:    true,
	trustfedv1.PiiType_PII_TYPE_PHONE:          true,
	trustfedv1.PiiType_PII_TYPE_PERSON_NAME:    true,
	trustfedv1.PiiType_PII_TYPE_IP_ADDRESS:     true,
	trustfedv1.PiiType_PII_TYPE_POSTAL_ADDRESS: true,
}

func hasPersonalData(types []trustfedv1.PiiType) bool {
	return slices.ContainsFunc(types, func(t trustfedv1.PiiType) bool { return personalTypes[t] })
}

var (
	hipaa = trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA
	soc2  = trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2
	gdpr  = trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR
)

// complianceViews says which views each entry type belongs to (besides
// SOC2, which takes every entry; decisions are placed by their data).
// docs/audit.md explains the choice.
var complianceViews = map[string][]trustfedv1.ComplianceMode{
	AuditAuthFailure:        {hipaa, gdpr},
	AuditGatewayRefusal:     {hipaa, gdpr},
	AuditLevelChange:        {hipaa, gdpr},
	AuditCascade:            {hipaa, gdpr},
	"RECORD_DELIVERIES":     {hipaa, gdpr},
	"REGISTER_ORGANIZATION": {hipaa, gdpr},
	"APPROVE_ORGANIZATION":  {hipaa, gdpr},
	"SUBMIT_PASSPORT":       {hipaa},
	"PROPOSE_AGREEMENT":     {hipaa, gdpr},
	"SIGN_AGREEMENT":        {hipaa, gdpr},
	"TERMINATE_AGREEMENT":   {hipaa, gdpr},
	"CREATE_AUTHORIZATION":  {hipaa, gdpr},
	"APPROVE_AUTHORIZATION": {hipaa, gdpr},
	"CONSUME_AUTHORIZATION": {hipaa, gdpr},
	"PROPOSE_ADMIN_CHANGE":  {hipaa, gdpr},
	"APPROVE_ADMIN_CHANGE":  {hipaa, gdpr},
	"BOOTSTRAP_ADMIN":       {hipaa, gdpr},
	"PUT_TOKEN":             {hipaa},
	"REVOKE_TOKEN":          {hipaa},
	// Access control of member nodes (HIPAA §164.312(a), (d)).
	"ENROL_MEMBER_NODE":        {hipaa},
	"REMOVE_MEMBER_NODE":       {hipaa},
	"ISSUE_MEMBER_CERTIFICATE": {hipaa},
	"OPEN_SESSION":             {hipaa, gdpr},
	"CLOSE_SESSION":            {hipaa, gdpr},
	// Where an organisation receives revocation notifications.
	"SET_WEBHOOK": {hipaa, gdpr},
}

// complianceOf is the views of an entry other than a decision.
func complianceOf(e *trustfedv1.AuditEntry) []trustfedv1.ComplianceMode {
	modes := append([]trustfedv1.ComplianceMode{soc2}, complianceViews[e.Type]...)
	slices.Sort(modes)
	return modes
}

// decisionViews is the views of a decision: every decision is SOC2; one on
// an interaction carrying personal data is HIPAA and GDPR too.
func decisionViews(types []trustfedv1.PiiType) []trustfedv1.ComplianceMode {
	if hasPersonalData(types) {
		return []trustfedv1.ComplianceMode{hipaa, soc2, gdpr}
	}
	return []trustfedv1.ComplianceMode{soc2}
}

// CheckLatestCheckpoint compares this replica's log with the newest
// checkpoint in its state (signature checked when it was committed): the
// start-up check that the entries the registry signed are still the ones on
// disk, whatever the file's own hashes say. It returns the checkpoint's
// size (0 when there is none or no audit log).
func (f *FSM) CheckLatestCheckpoint() (uint64, error) {
	if f.audit == nil {
		return 0, nil
	}
	cp, ok := f.store.Read().LatestCheckpoint()
	if !ok {
		return 0, nil
	}
	_, size, root, err := f.verifier.ParseCheckpoint(cp.Note)
	if err != nil {
		return 0, fmt.Errorf("parse the checkpoint of index %d: %w", cp.Index, err)
	}
	local, err := f.audit.log.RootAt(size)
	if err != nil {
		return size, fmt.Errorf("root of the first %d entries: %w", size, err)
	}
	if !bytes.Equal(local, root) {
		return size, fmt.Errorf("the first %d entries hash to %x, the checkpoint signed at index %d says %x", size, local, cp.Index, root)
	}
	return size, nil
}

// applyCheckpoint stores a checkpoint of the audit log. Once node keys are
// in force it must be certified: signed by a quorum of the registry nodes
// holding an endorsed key valid at the checkpoint's time, each of which
// compared the tree head and the trust-state commitment with its own
// (attestation.VerifyCertifiedCheckpoint); before, it is signed by the
// cluster's registry key. Every replica checks that, and that the tree is
// no smaller than the last one; then it compares the root with its own log
// and its commitment at the checkpoint's state index with the one signed.
// A replica that differs applies the command like everyone else (the
// replicated state stays identical) but records the fault: when a quorum
// certified the checkpoint, this replica is the one that diverged.
func (f *FSM) applyCheckpoint(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	var c commandv1.PutCheckpoint
	if err := proto.Unmarshal(env.Payload, &c); err != nil {
		return Invalid("payload", "not a PutCheckpoint: %v", err)
	}
	r := &Reader{txn: tx}
	cp, certified, err := f.openCheckpoint(r, env, &c)
	if err != nil {
		return err
	}
	origin, size, root := cp.Origin, cp.Size, cp.Root
	if latest, ok := r.LatestCheckpoint(); ok {
		prevOrigin, prevSize, _, err := f.verifier.ParseCheckpoint(latest.Note)
		mustDo(err)
		if prevOrigin != origin {
			return Invalid("note", "checkpoint of log %q, the log is %q", origin, prevOrigin)
		}
		if size <= prevSize {
			return Invalid("note", "checkpoint of %d entries does not grow the last one (%d)", size, prevSize)
		}
	}
	if f.audit == nil {
		return FailedPrecondition("note", "this registry keeps no audit log")
	}
	if have := f.audit.size(); size > have && !certified {
		return Invalid("note", "checkpoint of %d entries, the log has %d", size, have)
	}
	f.EndBatch() // the tree must include every entry before this command
	// A certified tree this replica does not have (every healthy replica
	// has the same log at the same index) is a root it cannot reproduce.
	local, err := f.audit.log.RootAt(size)
	if err != nil || !bytes.Equal(local, root) {
		msg := fmt.Sprintf("audit log disagrees with the checkpoint of %d entries committed at index %d: local root %x, signed root %x (err %v)", size, index, local, root, err)
		f.audit.fault.Store(&msg)
		f.logger.Error("audit log altered: this replica's log does not match the signed checkpoint", "size", size, "index", index, "error", err)
		if certified && f.diverged != nil {
			f.diverged(index, fmt.Sprintf("a quorum of the registry nodes certified the audit tree of %d entries with root %x (checkpoint at index %d); this replica's root is %x (err %v)", size, root, index, local, err))
		}
	}
	f.checkCommitment(c.StateCommitment, c.StateIndex, index, certified)
	mustDo(tx.Insert(tableCheckpoints, &commandv1.StoredCheckpoint{TreeSize: size, Note: c.Note, Time: stamp(env), Index: index}))
	return pruneCheckpoints(tx)
}

// maxCheckpointAge bounds how long before the command's time a certified
// checkpoint may have been made (its signatures are collected in seconds),
// and maxCheckpointAhead how far after.
const (
	maxCheckpointAge   = 10 * time.Minute
	maxCheckpointAhead = time.Minute
)

// openCheckpoint verifies a PutCheckpoint's note: certified by a quorum of
// node keys once they are in force, else signed by the registry key. A
// certified note's state line is the commitment compared: c's fields, if
// set, must equal it (they are filled from it otherwise).
func (f *FSM) openCheckpoint(r *Reader, env *commandv1.Envelope, c *commandv1.PutCheckpoint) (attestation.Checkpoint, bool, error) {
	if !r.NodeKeysInForce() {
		key, ok := r.NewestSigningKey()
		if !ok || len(key.PrivateSeed) == 0 {
			return attestation.Checkpoint{}, false, FailedPrecondition("note", "the registry has no signing key and no endorsed node key")
		}
		origin, size, root, err := f.verifier.OpenCheckpoint(c.Note, ed25519.NewKeyFromSeed(key.PrivateSeed).Public().(ed25519.PublicKey))
		if err != nil {
			return attestation.Checkpoint{}, false, Invalid("note", "%v", err)
		}
		return attestation.Checkpoint{Origin: origin, Size: size, Root: root}, false, nil
	}
	origin, _, _, err := f.verifier.ParseCheckpoint(c.Note)
	if err != nil {
		return attestation.Checkpoint{}, false, Invalid("note", "%v", err)
	}
	cp, _, err := attestation.VerifyCertifiedCheckpoint(c.Note, origin, r.NodeKeysForVerify())
	if err != nil {
		return attestation.Checkpoint{}, false, Invalid("note", "node keys are in force, the checkpoint must be certified by a quorum of the registry nodes: %v", err)
	}
	now := env.GetTime().AsTime()
	if cp.State.Time.Before(now.Add(-maxCheckpointAge)) || cp.State.Time.After(now.Add(maxCheckpointAhead)) {
		return attestation.Checkpoint{}, false, Invalid("note", "checkpoint made at %s, the command is stamped %s", cp.State.Time.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if (len(c.StateCommitment) > 0 && !bytes.Equal(c.StateCommitment, cp.State.Commitment)) || (c.StateIndex != 0 && c.StateIndex != cp.State.Index) {
		return attestation.Checkpoint{}, false, Invalid("state_commitment", "differs from the commitment the nodes certified in the note")
	}
	c.StateCommitment, c.StateIndex = cp.State.Commitment, cp.State.Index
	return cp, true, nil
}

// keepCheckpoints bounds the checkpoints kept (with their cosignatures).
const keepCheckpoints = 256

func pruneCheckpoints(tx *memdb.Txn) error {
	n := count(tx, tableCheckpoints)
	if n <= keepCheckpoints {
		return nil
	}
	it, err := tx.Get(tableCheckpoints, "id")
	if err != nil {
		return err
	}
	var old []any
	for raw := it.Next(); raw != nil && len(old) < n-keepCheckpoints; raw = it.Next() {
		old = append(old, raw)
	}
	for _, raw := range old {
		if err := tx.Delete(tableCheckpoints, raw); err != nil {
			return err
		}
	}
	return nil
}

// applyAddCosignature adds a member organisation's witness cosignature to a
// stored checkpoint, after checking it with the organisation's key.
func (f *FSM) applyAddCosignature(tx *memdb.Txn, env *commandv1.Envelope, _ uint64) error {
	var c commandv1.AddCosignature
	if err := proto.Unmarshal(env.Payload, &c); err != nil {
		return Invalid("payload", "not an AddCosignature: %v", err)
	}
	r := &Reader{txn: tx}
	org, ok := r.Organization(c.OrganizationId)
	if !ok {
		return NotFound("organization_id", "organization %q does not exist", c.OrganizationId)
	}
	if org.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
		return FailedPrecondition("organization_id", "organization %q is not active", c.OrganizationId)
	}
	cp, ok := first[*commandv1.StoredCheckpoint](tx, tableCheckpoints, "id", c.TreeSize)
	if !ok {
		return NotFound("checkpoint", "no checkpoint of %d entries is kept (the newest %d are)", c.TreeSize, keepCheckpoints)
	}
	ts, err := f.verifier.VerifyCosignature(cp.Note, c.SignatureLine, c.OrganizationId, org.PublicKey)
	if err != nil {
		return Invalid("checkpoint", "%v", err)
	}
	if ts.After(env.GetTime().AsTime().Add(5 * time.Minute)) {
		return Invalid("checkpoint", "cosignature time %s is in the future", ts.UTC().Format(time.RFC3339))
	}
	cp = proto.Clone(cp).(*commandv1.StoredCheckpoint)
	cp.Cosignatures = slices.DeleteFunc(cp.Cosignatures, func(x *commandv1.Cosignature) bool { return x.OrganizationId == c.OrganizationId })
	cp.Cosignatures = append(cp.Cosignatures, &commandv1.Cosignature{OrganizationId: c.OrganizationId, SignatureLine: c.SignatureLine, Time: stamp(env)})
	slices.SortFunc(cp.Cosignatures, func(a, b *commandv1.Cosignature) int { return strings.Compare(a.OrganizationId, b.OrganizationId) })
	return tx.Insert(tableCheckpoints, cp)
}

// applyAppendAudit checks an APPEND_AUDIT command and hands its events,
// decoded once, to the auditor (auditEvents writes their entries). The only
// state it changes is the sending server's last batch id: a batch sent
// again (its first call to the leader was abandoned) is refused with
// errAuditBatchApplied if it was applied already.
func (f *FSM) applyAppendAudit(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	var c commandv1.AppendAudit
	if err := proto.Unmarshal(env.Payload, &c); err != nil {
		return Invalid("payload", "not an AppendAudit: %v", err)
	}
	for i, ev := range c.Events {
		if ev.Event == nil {
			return Invalid(fmt.Sprintf("events[%d]", i), "carries no event")
		}
	}
	merged := 0
	for i, part := range c.Parts {
		field := fmt.Sprintf("parts[%d]", i)
		switch {
		case part.GetNodeId() == "" || part.GetBatchId() == "":
			return Invalid(field, "names no server or batch")
		case part.GetEvents() == 0:
			return Invalid(field+".events", "must be positive")
		}
		merged += int(part.Events)
	}
	if merged > len(c.Events) {
		return Invalid("parts", "%d merged events, the entry has %d", merged, len(c.Events))
	}
	if c.BatchId != "" {
		if err := lastAuditBatch(tx, env, c.NodeId, c.BatchId, index); err != nil {
			return err
		}
	}
	// A merged part is a server's first attempt of that batch (the leader
	// merges no other), so it cannot have been appended before; it is
	// remembered as that server's last batch, so that the server, sending
	// it again when its answer was lost, finds it appended.
	for i, part := range c.Parts {
		err := lastAuditBatch(tx, env, part.NodeId, part.BatchId, index)
		if errors.Is(err, errAuditBatchApplied) {
			return Invalid(fmt.Sprintf("parts[%d]", i), "batch %s of %s was appended already: a leader merges only first attempts", part.BatchId, part.NodeId)
		}
		if err != nil {
			return err
		}
	}
	if f.auditing(index) {
		f.audit.events, f.audit.batchNode = c.Events, c.NodeId
	}
	return nil
}

// LatestCheckpoint is the newest published checkpoint.
func (r *Reader) LatestCheckpoint() (*commandv1.StoredCheckpoint, bool) {
	raw, err := r.txn.Last(tableCheckpoints, "id")
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*commandv1.StoredCheckpoint), true
}

// LatestCosignedCheckpoint is the newest checkpoint with at least n
// cosignatures.
func (r *Reader) LatestCosignedCheckpoint(n int) (*commandv1.StoredCheckpoint, bool) {
	it, err := r.txn.GetReverse(tableCheckpoints, "id")
	if err != nil {
		return nil, false
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if cp := raw.(*commandv1.StoredCheckpoint); len(cp.Cosignatures) >= n {
			return cp, true
		}
	}
	return nil, false
}

// Checkpoint is the stored checkpoint of a tree size.
func (r *Reader) Checkpoint(size uint64) (*commandv1.StoredCheckpoint, bool) {
	return first[*commandv1.StoredCheckpoint](r.txn, tableCheckpoints, "id", size)
}

// errAuditBatchApplied: an APPEND_AUDIT whose server already had this batch
// applied (Result.Duplicate; no entry is written).
var errAuditBatchApplied = errors.New("audit batch already applied")

// lastAuditBatch remembers the last batch each server sent, as a row of the
// request-id table under a key no client can send (it holds a space), so it
// travels in snapshots and is forgotten after RequestTTL like a request id.
// A server has one batch in flight and resends only that one, so its last
// batch is the only one that can come twice.
func lastAuditBatch(tx *memdb.Txn, env *commandv1.Envelope, nodeID, batchID string, index uint64) error {
	key := "audit batch " + nodeID
	sum := sha256.Sum256([]byte(batchID))
	// Like a request id, a row older than RequestTTL counts as unseen
	// whether or not the clean-up removed it yet.
	if prev, ok := first[*commandv1.AppliedRequest](tx, tableRequests, "id", key); ok && bytes.Equal(prev.PayloadSha256, sum[:]) &&
		!prev.GetTime().AsTime().Before(env.GetTime().AsTime().Add(-RequestTTL)) {
		return errAuditBatchApplied
	}
	return tx.Insert(tableRequests, &commandv1.AppliedRequest{RequestId: key, Index: index, Time: env.Time, PayloadSha256: sum[:]})
}
