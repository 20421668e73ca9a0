package state

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// MaxAgreementDuration bounds an agreement's validity window.
const MaxAgreementDuration = 10 * 365 * 24 * time.Hour

// CheckTerms parses and checks serialized agreement terms against the view.
// Actions in the scope are checked against the tier table by the caller.
func CheckTerms(r *Reader, termsBytes []byte) (*trustfedv1.AgreementTerms, error) {
	var t trustfedv1.AgreementTerms
	if err := proto.Unmarshal(termsBytes, &t); err != nil {
		return nil, Invalid("terms", "are not a serialized trustfed.v1.AgreementTerms: %v", err)
	}
	if err := ValidateAgreementID("agreement_id", t.AgreementId); err != nil {
		return nil, err
	}
	for _, p := range []struct{ field, id string }{{"organization_a_id", t.OrganizationAId}, {"organization_b_id", t.OrganizationBId}} {
		if err := ValidateOrganizationID(p.field, p.id); err != nil {
			return nil, err
		}
	}
	if t.OrganizationAId == t.OrganizationBId {
		return nil, Invalid("organization_b_id", "an agreement needs two different organizations")
	}
	if len(t.GetScope().GetAllowedActions()) == 0 {
		return nil, Invalid("scope.allowed_actions", "must name at least one action")
	}
	for i, c := range t.GetScope().GetDataCategories() {
		if !ids.DataCategory.Match(c) {
			return nil, Invalid(fmt.Sprintf("scope.data_categories[%d]", i), "%q is not a category name (^[a-z][a-z0-9-]{1,62}$)", truncate(c))
		}
	}
	if t.NotBefore == nil || t.NotAfter == nil {
		return nil, Invalid("not_after", "validity window needs not_before and not_after")
	}
	if err := t.NotBefore.CheckValid(); err != nil {
		return nil, Invalid("not_before", "%v", err)
	}
	if err := t.NotAfter.CheckValid(); err != nil {
		return nil, Invalid("not_after", "%v", err)
	}
	if d := t.NotAfter.AsTime().Sub(t.NotBefore.AsTime()); d <= 0 || d > MaxAgreementDuration {
		return nil, Invalid("not_after", "must be after not_before and within %s of it", MaxAgreementDuration)
	}
	if err := ValidateLevel("termination.min_level", t.GetTermination().GetMinLevel()); err != nil {
		return nil, err
	}
	if !t.GetTermination().GetOnPartyRevokedOrSuspended() {
		return nil, Invalid("termination.on_party_revoked_or_suspended", "must be true: revocation or suspension of a party always ends an agreement")
	}
	if _, ok := r.Agreement(t.AgreementId); ok {
		return nil, AlreadyExists("agreement_id", "agreement %q already exists", t.AgreementId)
	}
	for _, p := range []struct {
		field string
		id    *string
	}{{"organization_a_id", &t.OrganizationAId}, {"organization_b_id", &t.OrganizationBId}} {
		o, ok := r.Organization(*p.id)
		if !ok {
			return nil, NotFound(p.field, "organization %q does not exist", *p.id)
		}
		if o.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
			return nil, FailedPrecondition(p.field, "organization %q is not active", *p.id)
		}
		// The same id, as the organisation's row holds it: a stored
		// agreement and its edges share it instead of keeping copies.
		*p.id = o.Id
	}
	return &t, nil
}

func applyProposeAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.ProposeAgreement
	if err := decode(env, &c); err != nil {
		return err
	}
	_, err := proposeAgreement(tx, env, index, c.Terms)
	return err
}

// proposeAgreement checks terms and stores them as a PENDING agreement.
func proposeAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64, terms []byte) (*trustfedv1.AgreementTerms, error) {
	t, err := CheckTerms(&Reader{txn: tx}, terms)
	if err != nil {
		return nil, err
	}
	now := stamp(env)
	ag := &trustfedv1.Agreement{
		Id: t.AgreementId, OrganizationAId: t.OrganizationAId, OrganizationBId: t.OrganizationBId,
		Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING,
		Terms:  terms, ParsedTerms: t,
		CreateTime: now, UpdateTime: now, CreateIndex: index, ModifyIndex: index,
	}
	return t, tx.Insert(tableAgreements, ag)
}

// CheckSignature verifies one party's signature over an agreement's terms
// and returns the agreement with it added (ACTIVE once both have signed).
func CheckSignature(r *Reader, v Verifier, agreementID, orgID string, sig []byte, now time.Time) (*trustfedv1.Agreement, error) {
	cur, ok := r.Agreement(agreementID)
	if !ok {
		return nil, NotFound("agreement_id", "agreement %q does not exist", agreementID)
	}
	if cur.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING {
		return nil, FailedPrecondition("agreement_id", "agreement %q is not waiting for signatures", agreementID)
	}
	party, ok := r.Organization(orgID)
	if !ok || (orgID != cur.OrganizationAId && orgID != cur.OrganizationBId) {
		return nil, Invalid("organization_id", "%q is not a party to agreement %q", orgID, agreementID)
	}
	if err := v.VerifySignature(party.PublicKey, PurposeAgreement, cur.Terms, sig); err != nil {
		return nil, Invalid("signature", "does not verify with the key registered for %q over the agreement's terms: %v", orgID, err)
	}
	ag := nextVersion(cur)
	if orgID == cur.OrganizationAId {
		if len(cur.SignatureA) > 0 {
			return nil, AlreadyExists("organization_id", "%q has already signed agreement %q", orgID, agreementID)
		}
		ag.SignatureA = sig
	} else {
		if len(cur.SignatureB) > 0 {
			return nil, AlreadyExists("organization_id", "%q has already signed agreement %q", orgID, agreementID)
		}
		ag.SignatureB = sig
	}
	if len(ag.SignatureA) > 0 && len(ag.SignatureB) > 0 {
		if other, ok := r.ActiveAgreement(ag.OrganizationAId, ag.OrganizationBId); ok {
			return nil, FailedPrecondition("agreement_id", "agreement %s between the two is already active; terminate it first", other.Id)
		}
		ag.Status = trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE
	}
	return ag, nil
}

func applySignAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.SignAgreement
	if err := decode(env, &c); err != nil {
		return err
	}
	return signAgreement(tx, env, index, v, c.AgreementId, c.OrganizationId, c.Signature)
}

// signAgreement checks and adds one party's signature (and activates the
// agreement once both have signed).
func signAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier, agreementID, orgID string, sig []byte) error {
	ag, err := CheckSignature(&Reader{txn: tx}, v, agreementID, orgID, sig, env.Time.AsTime())
	if err != nil {
		return err
	}
	now := stamp(env)
	if orgID == ag.OrganizationAId {
		ag.SignATime = now
	} else {
		ag.SignBTime = now
	}
	ag.UpdateTime, ag.ModifyIndex = now, index
	if err := tx.Insert(tableAgreements, ag); err != nil {
		return err
	}
	if ag.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
		return addEdges(tx, ag.OrganizationAId, ag.OrganizationBId, ag.Id)
	}
	return nil
}

// CheckTermination verifies a party's signed termination.
func CheckTermination(r *Reader, v Verifier, termBytes, sig []byte) (*trustfedv1.AgreementTermination, *trustfedv1.Agreement, error) {
	var t trustfedv1.AgreementTermination
	if err := proto.Unmarshal(termBytes, &t); err != nil || len(termBytes) == 0 {
		return nil, nil, Invalid("termination", "is not a serialized trustfed.v1.AgreementTermination")
	}
	if err := ValidateAgreementID("termination.agreement_id", t.AgreementId); err != nil {
		return nil, nil, err
	}
	if err := ValidateReason("termination.reason", t.Reason); err != nil {
		return nil, nil, err
	}
	cur, ok := r.Agreement(t.AgreementId)
	if !ok {
		return nil, nil, NotFound("termination.agreement_id", "agreement %q does not exist", t.AgreementId)
	}
	if cur.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED {
		return nil, nil, FailedPrecondition("termination.agreement_id", "agreement %q is already terminated", t.AgreementId)
	}
	party, ok := r.Organization(t.OrganizationId)
	if !ok || (t.OrganizationId != cur.OrganizationAId && t.OrganizationId != cur.OrganizationBId) {
		return nil, nil, Invalid("termination.organization_id", "%q is not a party to agreement %q", t.OrganizationId, t.AgreementId)
	}
	if err := v.VerifySignature(party.PublicKey, PurposeTermination, termBytes, sig); err != nil {
		return nil, nil, Invalid("signature", "does not verify with the key registered for %q: %v", t.OrganizationId, err)
	}
	return &t, cur, nil
}

func applyTerminateAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.TerminateAgreement
	if err := decode(env, &c); err != nil {
		return err
	}
	t, cur, err := CheckTermination(&Reader{txn: tx}, v, c.Termination, c.Signature)
	if err != nil {
		return err
	}
	if err := terminate(tx, env, index, cur, t.OrganizationId, t.Reason); err != nil {
		return err
	}
	return agreementTerminated(tx, env, index, cur, t.OrganizationId, t.Reason)
}

func terminate(tx *memdb.Txn, env *commandv1.Envelope, index uint64, cur *trustfedv1.Agreement, by, reason string) error {
	ag := nextVersion(cur)
	now := stamp(env)
	ag.Status = trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED
	ag.TerminateTime, ag.TerminationReason, ag.TerminatedBy = now, reason, by
	ag.UpdateTime, ag.ModifyIndex = now, index
	if err := tx.Insert(tableAgreements, ag); err != nil {
		return err
	}
	if cur.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
		return nil
	}
	if err := removeEdges(tx, ag.OrganizationAId, ag.OrganizationBId, ag.Id); err != nil {
		return err
	}
	return endSessions(tx, env, index, ag.OrganizationAId, ag.Id, trustfedv1.SessionStatus_SESSION_STATUS_TERMINATED, "agreement "+ag.Id+" ended: "+reason)
}

// terminateBrokenAgreements ends, at the command's time, every active
// agreement of org whose termination conditions now hold. It runs when an
// event that can break them is applied (status, level, passport, issuer),
// and returns them with the reason each ended.
func terminateBrokenAgreements(tx *memdb.Txn, env *commandv1.Envelope, index uint64, org string) ([]brokenAgreement, error) {
	r := &Reader{txn: tx}
	var active []*trustfedv1.Agreement
	if err := r.eachActiveAgreement(func(ag *trustfedv1.Agreement) bool {
		active = append(active, ag)
		return true
	}, org); err != nil {
		return nil, err
	}
	var ended []brokenAgreement
	for _, ag := range active {
		if reason, broken := r.agreementBroken(ag, env.Time.AsTime()); broken {
			if err := terminate(tx, env, index, ag, "condition", reason); err != nil {
				return nil, err
			}
			ended = append(ended, brokenAgreement{ag, reason})
		}
	}
	return ended, nil
}

// brokenAgreement is an active agreement whose conditions no longer hold,
// and why.
type brokenAgreement struct {
	ag     *trustfedv1.Agreement
	reason string
}

// endBrokenAgreements terminates org's broken agreements and tells both
// parties of each (the automatic triggers: level drop, passport renewal
// or revocation, issuer withdrawal).
func endBrokenAgreements(tx *memdb.Txn, env *commandv1.Envelope, index uint64, org string) error {
	ended, err := terminateBrokenAgreements(tx, env, index, org)
	if err != nil {
		return err
	}
	for _, b := range ended {
		if err := agreementTerminated(tx, env, index, b.ag, org, b.reason); err != nil {
			return err
		}
	}
	return nil
}

// nextVersion is a new row with every field of cur, for a write to change
// some: stored rows are never changed in place, so the new version shares
// the old one's terms, parsed terms, signatures, strings and timestamps
// instead of deep-copying them (each version would otherwise hold its own
// copy of everything; TestNextVersionKeepsEveryField fails for a field of
// Agreement left out here).
func nextVersion(cur *trustfedv1.Agreement) *trustfedv1.Agreement {
	return &trustfedv1.Agreement{
		Id:                cur.Id,
		OrganizationAId:   cur.OrganizationAId,
		OrganizationBId:   cur.OrganizationBId,
		Status:            cur.Status,
		CreateTime:        cur.CreateTime,
		UpdateTime:        cur.UpdateTime,
		CreateIndex:       cur.CreateIndex,
		ModifyIndex:       cur.ModifyIndex,
		Terms:             cur.Terms,
		ParsedTerms:       cur.ParsedTerms,
		SignatureA:        cur.SignatureA,
		SignatureB:        cur.SignatureB,
		SignATime:         cur.SignATime,
		SignBTime:         cur.SignBTime,
		TerminateTime:     cur.TerminateTime,
		TerminationReason: cur.TerminationReason,
		TerminatedBy:      cur.TerminatedBy,
	}
}

// Finding agreements.
//
// An agreement is found by id through the agreements table's id index. By
// party, through two sources, so that an active agreement (the common kind,
// and at scale the numerous one) costs no index entry beyond its id: the
// edges table, which holds two replicated rows for each active agreement
// anyway (cascade.go: organisation, partner, agreement id), finds the
// active ones; the agreements table's "inactive" index (schema.go) the
// pending and terminated ones. Each go-memdb index entry costs ~400 bytes
// of radix-tree nodes (BENCHMARKS.md, "Memory per agreement"), so an active
// agreement keeps three entries where it kept six.

// isAgreementRef tells an agreement's edge from a session's.
func isAgreementRef(ref string) bool { return strings.HasPrefix(ref, "agr-") }

// eachActiveAgreement calls fn with each active agreement of org (parties:
// org, or org and a partner), in partner then id order, until fn returns
// false.
func (r *Reader) eachActiveAgreement(fn func(*trustfedv1.Agreement) bool, parties ...any) error {
	it, err := r.txn.Get(tableEdges, "id_prefix", parties...)
	if err != nil {
		return fmt.Errorf("active agreements of %v: %w", parties, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		e := raw.(*commandv1.GraphEdge)
		if !isAgreementRef(e.RefId) {
			continue
		}
		ag, ok := r.Agreement(e.RefId)
		if !ok || ag.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
			continue // never: an agreement's edges go when it stops being active
		}
		if !fn(ag) {
			return nil
		}
	}
	return nil
}

// ActiveAgreement returns the active agreement between a and b, if any:
// the pair's first edge (an agreement's edges sort before its sessions',
// "agr-" < "ses-", and a pair has at most one active agreement).
func (r *Reader) ActiveAgreement(a, b string) (*trustfedv1.Agreement, bool) {
	e, ok := first[*commandv1.GraphEdge](r.txn, tableEdges, "id_prefix", a, b)
	if !ok || !isAgreementRef(e.RefId) {
		return nil, false
	}
	ag, ok := r.Agreement(e.RefId)
	if !ok || ag.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
		return nil, false // never: an agreement's edges go when it stops being active
	}
	return ag, true
}

// LatestAgreement returns the agreement that governs the pair a, b: the
// active one, or else the most recently created one (pending or
// terminated), so a decision can say why it does not hold.
func (r *Reader) LatestAgreement(a, b string) (*trustfedv1.Agreement, bool) {
	if ag, ok := r.ActiveAgreement(a, b); ok {
		return ag, true
	}
	it, err := r.txn.Get(tableAgreements, "inactive", a, b)
	if err != nil {
		return nil, false
	}
	var latest *trustfedv1.Agreement
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if ag := raw.(*trustfedv1.Agreement); latest == nil || ag.CreateIndex > latest.CreateIndex {
			latest = ag
		}
	}
	return latest, latest != nil
}

// Agreements lists agreements in id order (only those org is party to when
// org is not empty), starting after the id `after`, at most limit of them.
func (r *Reader) Agreements(org, after string, limit int) (ags []*trustfedv1.Agreement, next string) {
	if org == "" {
		return page(r.txn, tableAgreements, after, limit, (*trustfedv1.Agreement).GetId, nil)
	}
	// An organisation's agreements come from two sources, neither in id
	// order: gather those after `after`, then sort.
	var all []*trustfedv1.Agreement
	if err := r.eachActiveAgreement(func(ag *trustfedv1.Agreement) bool {
		if ag.Id > after {
			all = append(all, ag)
		}
		return true
	}, org); err != nil {
		return nil, ""
	}
	it, err := r.txn.Get(tableAgreements, "inactive", org)
	if err != nil {
		return nil, ""
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if ag := raw.(*trustfedv1.Agreement); ag.Id > after {
			all = append(all, ag)
		}
	}
	slices.SortFunc(all, func(x, y *trustfedv1.Agreement) int { return strings.Compare(x.Id, y.Id) })
	if len(all) > limit {
		return all[:limit], all[limit-1].Id
	}
	return all, ""
}

// restoreCompactor makes the rows a snapshot restore reads share what the
// write path's rows share (restore unmarshals each row whole, with its own
// copy of every string and timestamp): an agreement's and an edge's
// organisation ids are the organisation rows' (organisations are restored
// first), an agreement's parsed terms use the row's ids, and equal
// timestamps of a row are one. The rows' content, and so their encoding,
// the snapshot and the commitment, do not change.
type restoreCompactor struct {
	tx   *memdb.Txn
	orgs map[string]string // organisation id -> the organisation row's copy
}

func newRestoreCompactor(tx *memdb.Txn) *restoreCompactor {
	return &restoreCompactor{tx: tx, orgs: map[string]string{}}
}

// org is the organisation row's copy of id (id itself when there is none).
func (c *restoreCompactor) org(id string) string {
	if s, ok := c.orgs[id]; ok {
		return s
	}
	if o, ok := first[*trustfedv1.Organization](c.tx, tableOrganizations, "id", id); ok {
		c.orgs[id] = o.Id
		return o.Id
	}
	return id
}

// row compacts a row of table in place before it is inserted.
func (c *restoreCompactor) row(table string, row proto.Message) {
	switch table {
	case tableAgreements:
		ag, ok := row.(*trustfedv1.Agreement)
		if !ok {
			return
		}
		ag.OrganizationAId, ag.OrganizationBId = c.org(ag.OrganizationAId), c.org(ag.OrganizationBId)
		if t := ag.ParsedTerms; t != nil {
			for _, p := range [][2]*string{{&t.AgreementId, &ag.Id}, {&t.OrganizationAId, &ag.OrganizationAId}, {&t.OrganizationBId, &ag.OrganizationBId}} {
				if *p[0] == *p[1] {
					*p[0] = *p[1]
				}
			}
		}
		shareTimestamps(&ag.CreateTime, &ag.UpdateTime, &ag.SignATime, &ag.SignBTime, &ag.TerminateTime)
	case tableEdges:
		if e, ok := row.(*commandv1.GraphEdge); ok {
			e.OrganizationId, e.PartnerId = c.org(e.OrganizationId), c.org(e.PartnerId)
		}
	}
}

// shareTimestamps points each of ts at the first earlier one with the same
// value (the write path stamps a write's fields with one timestamp).
func shareTimestamps(ts ...**timestamppb.Timestamp) {
	for i, t := range ts {
		if *t == nil {
			continue
		}
		for _, u := range ts[:i] {
			if *u != nil && (*u).Seconds == (*t).Seconds && (*u).Nanos == (*t).Nanos &&
				len((*t).ProtoReflect().GetUnknown()) == 0 && len((*u).ProtoReflect().GetUnknown()) == 0 {
				*t = *u
				break
			}
		}
	}
}

// MaxImportAgreements bounds the agreements of one ImportAgreements command
// (its bytes are bounded by the API's largest message, 1 MiB).
const MaxImportAgreements = 1000

// ValidateImportSize checks the number of agreements an import carries.
func ValidateImportSize(n int) error {
	if n == 0 {
		return Invalid("agreements", "must hold at least one agreement")
	}
	if n > MaxImportAgreements {
		return Invalid("agreements", "holds %d agreements; at most %d per import", n, MaxImportAgreements)
	}
	return nil
}

// applyImportAgreements applies each item as ProposeAgreement and then the
// two parties' SignAgreement would, in order, in the command's one
// transaction: a refused item refuses the whole command (nothing of it is
// written), with the item's index in the error's field.
func applyImportAgreements(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.ImportAgreements
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateImportSize(len(c.Agreements)); err != nil {
		return err
	}
	for i, item := range c.Agreements {
		at := fmt.Sprintf("agreements[%d]", i)
		t, err := proposeAgreement(tx, env, index, item.GetTerms())
		if err != nil {
			return inItem(err, at, "terms")
		}
		for _, s := range []struct {
			field, org string
			sig        []byte
		}{{"signature_a", t.OrganizationAId, item.GetSignatureA()}, {"signature_b", t.OrganizationBId, item.GetSignatureB()}} {
			if err := signAgreement(tx, env, index, v, t.AgreementId, s.org, s.sig); err != nil {
				return inItem(err, at, s.field)
			}
		}
	}
	return nil
}

// inItem moves err's field into the import item at (e.g. "agreements[3]"):
// a signature's error names the item's signature field (sig), any other the
// field of its terms.
func inItem(err error, at, sig string) error {
	var e *Error
	if !errors.As(err, &e) {
		return fmt.Errorf("%s: %w", at, err)
	}
	moved := *e
	switch {
	case e.Field == "signature":
		moved.Field = at + "." + sig
	case e.Field == "terms" || e.Field == "":
		moved.Field = at + ".terms"
	default:
		moved.Field = at + ".terms." + e.Field
	}
	return &moved
}
