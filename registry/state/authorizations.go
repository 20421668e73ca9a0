package state

import (
	"fmt"
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// Dual authorisation (AG-783 TC5). An authorisation request names one
// interaction exactly (parties, action, data types, value) and an expiry; it
// is GRANTED once each of the two parties has approved it with a signature
// by its registered key over the stored statement bytes. The same
// organisation approving twice, an organisation that is not a party, and an
// approval at or after the expiry are refused.
//
// A granted authorisation backs at most max_uses ALLOW decisions (one by
// default): each takes one use with a CONSUME_AUTHORIZATION command before
// it is answered, so every replica agrees on the uses left and two checks
// can never both take the last one. Authorisations created before uses were
// counted have max_uses 0 and are not limited.

// MaxAuthorizationUses bounds max_uses.
const MaxAuthorizationUses = 1000

// ValidateMaxUses checks a requested number of uses (0 means 1).
func ValidateMaxUses(field string, n uint32) error {
	if n > MaxAuthorizationUses {
		return Invalid(field, "%d is more than %d uses", n, MaxAuthorizationUses)
	}
	return nil
}

// ValidateAuthorizationID checks an authorisation id.
func ValidateAuthorizationID(field, id string) error {
	if !ids.Authorization.Match(id) {
		return Invalid(field, "%q is not an authorization id (auth- and 16 hex digits)", truncate(id))
	}
	return nil
}

// Authorization returns a dual-authorisation request.
func (r *Reader) Authorization(id string) (*trustfedv1.Authorization, bool) {
	return first[*trustfedv1.Authorization](r.txn, tableAuthorizations, "id", id)
}

// CheckAuthorizationStatement parses and checks a statement to open.
func CheckAuthorizationStatement(r *Reader, b []byte, now time.Time) (*trustfedv1.AuthorizationStatement, error) {
	var st trustfedv1.AuthorizationStatement
	if err := proto.Unmarshal(b, &st); err != nil {
		return nil, Invalid("statement", "is not a serialized trustfed.v1.AuthorizationStatement: %v", err)
	}
	if err := ValidateAuthorizationID("authorization_id", st.AuthorizationId); err != nil {
		return nil, err
	}
	if _, ok := r.Authorization(st.AuthorizationId); ok {
		return nil, AlreadyExists("authorization_id", "authorization %q already exists", st.AuthorizationId)
	}
	for _, p := range []struct{ field, id string }{{"check.from_organization_id", st.FromOrganizationId}, {"check.to_organization_id", st.ToOrganizationId}} {
		if _, ok := r.Organization(p.id); !ok {
			return nil, NotFound(p.field, "organization %q does not exist", p.id)
		}
	}
	if st.ExpireTime == nil || !now.Before(st.ExpireTime.AsTime()) {
		return nil, Invalid("expire_time", "must be after the request time")
	}
	if err := ValidateMaxUses("max_uses", st.MaxUses); err != nil {
		return nil, err
	}
	return &st, nil
}

func applyCreateAuthorization(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.CreateAuthorization
	if err := decode(env, &c); err != nil {
		return err
	}
	st, err := CheckAuthorizationStatement(&Reader{txn: tx}, c.Statement, env.Time.AsTime())
	if err != nil {
		return err
	}
	return tx.Insert(tableAuthorizations, &trustfedv1.Authorization{
		Id: st.AuthorizationId, Statement: c.Statement, ParsedStatement: st,
		Status:     trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_PENDING,
		CreateTime: stamp(env), CreateIndex: index, ModifyIndex: index,
		UsesRemaining: st.MaxUses,
	})
}

// CheckApproval verifies one party's approval at now and returns the
// authorisation with it added (GRANTED once both parties approved).
func CheckApproval(r *Reader, v Verifier, id, orgID string, sig []byte, now time.Time) (*trustfedv1.Authorization, error) {
	cur, ok := r.Authorization(id)
	if !ok {
		return nil, NotFound("authorization_id", "authorization %q does not exist", id)
	}
	st := cur.ParsedStatement
	if !now.Before(st.GetExpireTime().AsTime()) {
		return nil, FailedPrecondition("authorization_id", "authorization %q expired at %s", id, st.GetExpireTime().AsTime().UTC().Format(time.RFC3339))
	}
	if orgID != st.FromOrganizationId && orgID != st.ToOrganizationId {
		return nil, Invalid("organization_id", "%q is not a party to the interaction of authorization %q", orgID, id)
	}
	if slices.ContainsFunc(cur.Approvals, func(a *trustfedv1.Approval) bool { return a.OrganizationId == orgID }) {
		return nil, AlreadyExists("organization_id", "%q has already approved authorization %q: a second approval must come from the other party", orgID, id)
	}
	party, ok := r.Organization(orgID)
	if !ok {
		return nil, NotFound("organization_id", "organization %q does not exist", orgID)
	}
	if err := v.VerifySignature(party.PublicKey, PurposeAuthorization, cur.Statement, sig); err != nil {
		return nil, Invalid("signature", "does not verify with the key registered for %q over the authorization statement: %v", orgID, err)
	}
	a := proto.CloneOf(cur)
	a.Approvals = append(a.Approvals, &trustfedv1.Approval{OrganizationId: orgID, Signature: sig})
	if len(a.Approvals) == 2 {
		a.Status = trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_GRANTED
	}
	return a, nil
}

func applyApproveAuthorization(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.ApproveAuthorization
	if err := decode(env, &c); err != nil {
		return err
	}
	a, err := CheckApproval(&Reader{txn: tx}, v, c.AuthorizationId, c.OrganizationId, c.Signature, env.Time.AsTime())
	if err != nil {
		return err
	}
	a.Approvals[len(a.Approvals)-1].Time = stamp(env)
	a.ModifyIndex = index
	return tx.Insert(tableAuthorizations, a)
}

// AuthorizationCovers reports why a granted authorisation does not cover a
// check at now ("" when it does).
func AuthorizationCovers(a *trustfedv1.Authorization, req *trustfedv1.CheckInteractionRequest, now time.Time) string {
	st := a.GetParsedStatement()
	switch {
	case a.GetStatus() != trustfedv1.AuthorizationStatus_AUTHORIZATION_STATUS_GRANTED:
		return "authorization " + a.GetId() + " is not granted (it needs an approval from each party)"
	case !now.Before(st.GetExpireTime().AsTime()):
		return "authorization " + a.GetId() + " has expired"
	case st.FromOrganizationId != req.FromOrganizationId || st.ToOrganizationId != req.ToOrganizationId ||
		st.Action != req.Action || st.Value != req.Value || !slices.Equal(st.DataTypes, req.DataTypes):
		return "authorization " + a.GetId() + " covers another interaction"
	}
	return ""
}

// Limited reports whether a's uses are counted (every authorisation but
// those created before max_uses existed).
func Limited(a *trustfedv1.Authorization) bool {
	return a.GetParsedStatement().GetMaxUses() > 0
}

// AuthorizationUse reports why a check cannot rely on a, which covers it,
// for the use it holds ("" when it can). use is the Raft index of the
// CONSUME_AUTHORIZATION that took a use for the check, or 0 before one was
// taken: then a use must be left.
func AuthorizationUse(a *trustfedv1.Authorization, use uint64) string {
	switch {
	case !Limited(a):
		return ""
	case use == 0 && a.GetUsesRemaining() == 0:
		return fmt.Sprintf("authorization %s has already been used (%d of %d uses)", a.GetId(), len(a.GetUseIndexes()), a.GetParsedStatement().GetMaxUses())
	case use != 0 && !slices.Contains(a.GetUseIndexes(), use):
		return fmt.Sprintf("authorization %s has no use taken at index %d", a.GetId(), use)
	}
	return ""
}

// CheckConsume checks that a use of authorization id can be taken for
// check at now, and returns the authorisation with the use at index taken.
func CheckConsume(r *Reader, id string, check *trustfedv1.CheckInteractionRequest, now time.Time, index uint64) (*trustfedv1.Authorization, error) {
	cur, ok := r.Authorization(id)
	if !ok {
		return nil, NotFound("authorization_id", "authorization %q does not exist", id)
	}
	if problem := AuthorizationCovers(cur, check, now); problem != "" {
		return nil, FailedPrecondition("authorization_id", "%s", problem)
	}
	if !Limited(cur) {
		return nil, FailedPrecondition("authorization_id", "authorization %q does not count its uses (created before max_uses)", id)
	}
	if problem := AuthorizationUse(cur, 0); problem != "" {
		return nil, FailedPrecondition("authorization_id", "%s", problem)
	}
	a := proto.CloneOf(cur)
	a.UsesRemaining--
	a.UseIndexes = append(a.UseIndexes, index)
	a.ModifyIndex = index
	return a, nil
}

func applyConsumeAuthorization(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.ConsumeAuthorization
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateAuthorizationID("authorization_id", c.AuthorizationId); err != nil {
		return err
	}
	if c.Check == nil {
		return Invalid("check", "is required")
	}
	a, err := CheckConsume(&Reader{txn: tx}, c.AuthorizationId, c.Check, env.Time.AsTime(), index)
	if err != nil {
		return err
	}
	return tx.Insert(tableAuthorizations, a)
}
