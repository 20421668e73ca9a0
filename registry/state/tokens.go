package state

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Bearer tokens for people: federation admins, an organisation's governance
// authority (scoped to its organisation) and regulators (federation-wide, or
// scoped to one organisation). The registry keeps only the SHA-256 of a
// token's secret. A token stops working at its expiry or once revoked; a
// revocation is a committed command, so it holds on the next call on every
// server. The first admin token of a cluster (bootstrap) never expires.

// Token lifetimes.
const (
	MinTokenTTL     = time.Minute
	MaxTokenTTL     = 366 * 24 * time.Hour
	DefaultTokenTTL = 30 * 24 * time.Hour
)

const (
	maxTokenDescription = 200
	maxRevokeReason     = 500
)

// Why a token cannot be used (TokenUsable wraps them).
var (
	ErrTokenRevoked = errors.New("token was revoked")
	ErrTokenExpired = errors.New("token expired")
)

// TokenUsable reports whether t may authenticate a request at now: not
// revoked and not expired. The error is deliberately not an *Error (no
// business error kind): the caller reports it as unauthenticated.
func TokenUsable(t *commandv1.Token, now time.Time) error {
	if rt := t.GetRevokeTime(); rt != nil {
		return fmt.Errorf("%w at %s", ErrTokenRevoked, rt.AsTime().UTC().Format(time.RFC3339))
	}
	if et := t.GetExpireTime(); et != nil && !now.Before(et.AsTime()) {
		return fmt.Errorf("%w at %s", ErrTokenExpired, et.AsTime().UTC().Format(time.RFC3339))
	}
	return nil
}

// ValidateTokenID checks the id of a token made by attestation.NewToken (12
// lowercase hex digits); the bootstrap token is exempt (it predates the check).
func ValidateTokenID(field, id string) error {
	if id == "" {
		return Invalid(field, "is required")
	}
	if !ids.Token.Match(id) {
		return Invalid(field, "%q is not a token id (want 12 lowercase hex digits)", truncate(id))
	}
	return nil
}

// ValidateTokenScope checks a role and the organisation it is scoped to:
// governance tokens need an organisation (which need not be registered yet:
// a prospective member registers with its governance token), regulator
// tokens may have one, admin and monitor tokens have none.
func ValidateTokenScope(roleField, orgField string, role commandv1.Role, org string) error {
	switch role {
	case commandv1.Role_ROLE_ADMIN:
		if org != "" {
			return Invalid(orgField, "must be empty for an admin token (admins act for the whole federation)")
		}
		return nil
	case commandv1.Role_ROLE_MONITOR:
		if org != "" {
			return Invalid(orgField, "must be empty for a monitor token (metrics are the node's, not an organisation's)")
		}
		return nil
	case commandv1.Role_ROLE_GOVERNANCE:
		return ValidateOrganizationID(orgField, org)
	case commandv1.Role_ROLE_REGULATOR:
		if org == "" {
			return nil
		}
		return ValidateOrganizationID(orgField, org)
	case commandv1.Role_ROLE_UNSPECIFIED:
		return Invalid(roleField, "is required")
	default:
		return Invalid(roleField, "unsupported role %d", int32(role))
	}
}

// ValidateTokenDescription checks a description: 1..200 printable characters.
func ValidateTokenDescription(field, s string) error {
	return validateText(field, s, maxTokenDescription)
}

// ValidateRevokeReason checks a revocation reason: 1..500 printable characters.
func ValidateRevokeReason(field, s string) error {
	return validateText(field, s, maxRevokeReason)
}

// ValidateTokenExpiry checks a token's expiry against the time it is
// created: after it, and at most MaxTokenTTL later.
func ValidateTokenExpiry(field string, expire *timestamppb.Timestamp, now time.Time) error {
	if expire == nil {
		return Invalid(field, "is required")
	}
	if err := expire.CheckValid(); err != nil {
		return Invalid(field, "%v", err)
	}
	at := expire.AsTime()
	switch {
	case !at.After(now):
		return Invalid(field, "%s is not after the creation time %s", at.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case at.Sub(now) > MaxTokenTTL:
		return Invalid(field, "%s is more than %v after the creation time %s", at.Format(time.RFC3339), MaxTokenTTL, now.UTC().Format(time.RFC3339))
	}
	return nil
}

func applyPutToken(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.PutToken
	if err := decode(env, &c); err != nil {
		return err
	}
	t := c.GetToken()
	if err := checkPutToken(t, c.Bootstrap, env.Time.AsTime()); err != nil {
		return err
	}
	if c.Bootstrap && count(tx, tableTokens) > 0 {
		return FailedPrecondition("token", "the registry is already bootstrapped")
	}
	if _, ok := first[*commandv1.Token](tx, tableTokens, "id", t.Id); ok {
		return AlreadyExists("token.id", "token %q already exists", t.Id)
	}
	if _, ok := first[*commandv1.Token](tx, tableTokens, "hash", t.SecretSha256); ok {
		return AlreadyExists("token.secret_sha256", "another token has the same secret")
	}
	tok := proto.CloneOf(t)
	tok.CreateTime = stamp(env)
	tok.CreateIndex = index
	tok.CreatedBy = env.Principal
	return tx.Insert(tableTokens, tok)
}

// checkPutToken checks a token to store at now. The bootstrap token (the
// cluster's first, stored by the server itself) is an admin token; it
// expires like any other (the server's -bootstrap-token-ttl), except one
// stored by a server from before bootstrap tokens expired, which is
// replayed as it was: without an expiry. Every other token has an expiry,
// a description and an id of the token format.
func checkPutToken(t *commandv1.Token, bootstrap bool, now time.Time) error {
	switch {
	case t == nil:
		return Invalid("token", "is required")
	case t.GetId() == "":
		return Invalid("token.id", "is required")
	case len(t.GetSecretSha256()) != sha256.Size:
		return Invalid("token.secret_sha256", "must be %d bytes", sha256.Size)
	case t.RevokeTime != nil || t.RevokeReason != "":
		return Invalid("token.revoke_time", "a new token cannot be revoked already")
	}
	if bootstrap {
		switch {
		case t.Role != commandv1.Role_ROLE_ADMIN:
			return Invalid("token.role", "the bootstrap token must be an admin token, not %v", t.Role)
		case t.OrganizationId != "":
			return Invalid("token.organization_id", "must be empty for the bootstrap token")
		case t.ExpireTime != nil:
			if err := ValidateTokenExpiry("token.expire_time", t.ExpireTime, now); err != nil {
				return err
			}
		}
		if t.Description != "" {
			return ValidateTokenDescription("token.description", t.Description)
		}
		return nil
	}
	if err := ValidateTokenID("token.id", t.Id); err != nil {
		return err
	}
	if err := ValidateTokenScope("token.role", "token.organization_id", t.Role, t.OrganizationId); err != nil {
		return err
	}
	if err := ValidateTokenDescription("token.description", t.Description); err != nil {
		return err
	}
	return ValidateTokenExpiry("token.expire_time", t.ExpireTime, now)
}

func applyRevokeToken(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.RevokeToken
	if err := decode(env, &c); err != nil {
		return err
	}
	if c.TokenId == "" {
		return Invalid("token_id", "is required")
	}
	if err := ValidateRevokeReason("reason", c.Reason); err != nil {
		return err
	}
	cur, ok := first[*commandv1.Token](tx, tableTokens, "id", c.TokenId)
	if !ok {
		return NotFound("token_id", "token %q does not exist", c.TokenId)
	}
	now := env.Time.AsTime()
	if cur.RevokeTime != nil {
		return FailedPrecondition("token_id", "token %q was already revoked at %s", cur.Id, cur.RevokeTime.AsTime().UTC().Format(time.RFC3339))
	}
	if cur.Role == commandv1.Role_ROLE_ADMIN && TokenUsable(cur, now) == nil && !otherUsableAdminToken(tx, cur.Id, now) {
		return FailedPrecondition("token_id", "token %q is the last usable admin token: create another admin token before revoking it", cur.Id)
	}
	tok := proto.CloneOf(cur)
	tok.RevokeTime = stamp(env)
	tok.RevokeReason = c.Reason
	return tx.Insert(tableTokens, tok)
}

// otherUsableAdminToken reports whether an admin token other than id works
// at now: revoking the last one would lock every admin out for good (the
// bootstrap token is stored only while the registry holds no token).
func otherUsableAdminToken(tx *memdb.Txn, id string, now time.Time) bool {
	it, err := tx.Get(tableTokens, "id")
	mustDo(err)
	for raw := it.Next(); raw != nil; raw = it.Next() {
		t := raw.(*commandv1.Token)
		if t.Id != id && t.Role == commandv1.Role_ROLE_ADMIN && TokenUsable(t, now) == nil {
			return true
		}
	}
	return false
}

// Token returns the token with the given id (revoked and expired ones too).
func (r *Reader) Token(id string) (*commandv1.Token, bool) {
	return first[*commandv1.Token](r.txn, tableTokens, "id", id)
}

// ListTokens lists tokens in id order (only those scoped to org when org is
// not empty; only those usable at now unless includeInactive), starting
// after the id `after`, at most limit; next is the last id returned when
// more follow.
func (r *Reader) ListTokens(org string, includeInactive bool, now time.Time, after string, limit int) (toks []*commandv1.Token, next string) {
	keep := func(t *commandv1.Token) bool { return includeInactive || TokenUsable(t, now) == nil }
	if org == "" {
		return page(r.txn, tableTokens, after, limit, (*commandv1.Token).GetId, keep)
	}
	// Entries of a non-unique index are ordered by the primary key within a value.
	it, err := r.txn.Get(tableTokens, "org", org)
	if err != nil {
		return nil, ""
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		t := raw.(*commandv1.Token)
		if t.Id <= after || !keep(t) {
			continue
		}
		if len(toks) == limit {
			return toks, toks[len(toks)-1].Id
		}
		toks = append(toks, t)
	}
	return toks, ""
}
