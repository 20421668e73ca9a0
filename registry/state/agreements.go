package state

import (
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
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
	for _, p := range []struct{ field, id string }{{"organization_a_id", t.OrganizationAId}, {"organization_b_id", t.OrganizationBId}} {
		o, ok := r.Organization(p.id)
		if !ok {
			return nil, NotFound(p.field, "organization %q does not exist", p.id)
		}
		if o.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
			return nil, FailedPrecondition(p.field, "organization %q is not active", p.id)
		}
	}
	return &t, nil
}

func applyProposeAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.ProposeAgreement
	if err := decode(env, &c); err != nil {
		return err
	}
	t, err := CheckTerms(&Reader{txn: tx}, c.Terms)
	if err != nil {
		return err
	}
	ag := &trustfedv1.Agreement{
		Id: t.AgreementId, OrganizationAId: t.OrganizationAId, OrganizationBId: t.OrganizationBId,
		Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING,
		Terms:  c.Terms, ParsedTerms: t,
		CreateTime: stamp(env), UpdateTime: stamp(env), CreateIndex: index, ModifyIndex: index,
	}
	return tx.Insert(tableAgreements, ag)
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
	ag := proto.CloneOf(cur)
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
	ag, err := CheckSignature(&Reader{txn: tx}, v, c.AgreementId, c.OrganizationId, c.Signature, env.Time.AsTime())
	if err != nil {
		return err
	}
	if c.OrganizationId == ag.OrganizationAId {
		ag.SignATime = stamp(env)
	} else {
		ag.SignBTime = stamp(env)
	}
	ag.UpdateTime, ag.ModifyIndex = stamp(env), index
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
	ag := proto.CloneOf(cur)
	ag.Status = trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED
	ag.TerminateTime, ag.TerminationReason, ag.TerminatedBy = stamp(env), reason, by
	ag.UpdateTime, ag.ModifyIndex = stamp(env), index
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
	it, err := tx.Get(tableAgreements, "party", org)
	if err != nil {
		return nil, err
	}
	var active []*trustfedv1.Agreement
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if ag := raw.(*trustfedv1.Agreement); ag.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
			active = append(active, ag)
		}
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
