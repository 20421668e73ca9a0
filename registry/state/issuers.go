package state

import (
	"slices"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// MaxOnboardingPeriod bounds the federation's onboarding period.
const MaxOnboardingPeriod = 5 * 365 * 24 * time.Hour

func accreditIssuer(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier, in *trustfedv1.AccreditIssuerChange) error {
	if cur, ok := first[*trustfedv1.Issuer](tx, tableIssuers, "id", in.IssuerId); ok && cur.Status == trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED {
		return AlreadyExists("change.accredit_issuer.issuer_id", "issuer %q is already accredited", in.IssuerId)
	}
	fp, _ := v.Fingerprint(in.PublicKey)
	is := &trustfedv1.Issuer{
		Id: in.IssuerId, Name: in.Name, PublicKey: in.PublicKey, PublicKeyFingerprint: fp, MaxLevel: in.MaxLevel,
		Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED, AccreditTime: stamp(env),
		CreateIndex: index, ModifyIndex: index,
	}
	return tx.Insert(tableIssuers, is)
}

func withdrawIssuer(tx *memdb.Txn, env *commandv1.Envelope, index uint64, issuerID, reason string) error {
	const field = "change.withdraw_issuer.issuer_id"
	cur, ok := first[*trustfedv1.Issuer](tx, tableIssuers, "id", issuerID)
	if !ok {
		return NotFound(field, "issuer %q does not exist", issuerID)
	}
	if cur.Status == trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN {
		return FailedPrecondition(field, "issuer %q is already withdrawn", issuerID)
	}
	is := proto.CloneOf(cur)
	is.Status = trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN
	is.WithdrawTime, is.WithdrawReason, is.ModifyIndex = stamp(env), reason, index
	if err := tx.Insert(tableIssuers, is); err != nil {
		return err
	}
	// Every organisation holding a passport from this issuer just lost its
	// attested level: end the agreements whose conditions that breaks.
	it, err := tx.Get(tableOrganizations, "issuer", issuerID)
	if err != nil {
		return err
	}
	var ids []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		ids = append(ids, raw.(*trustfedv1.Organization).Id)
	}
	for _, id := range ids {
		if err := endBrokenAgreements(tx, env, index, id); err != nil {
			return err
		}
	}
	return nil
}

func revokePassport(tx *memdb.Txn, env *commandv1.Envelope, index uint64, serial, reason string) error {
	if _, ok := first[*commandv1.RevokedPassport](tx, tableRevoked, "id", serial); ok {
		return AlreadyExists("change.revoke_passport.serial", "passport %s is already revoked", serial)
	}
	if err := tx.Insert(tableRevoked, &commandv1.RevokedPassport{Serial: serial, Reason: reason, RevokeTime: stamp(env), Index: index}); err != nil {
		return err
	}
	it, err := tx.Get(tableOrganizations, "id")
	if err != nil {
		return err
	}
	var holders []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if o := raw.(*trustfedv1.Organization); o.GetPassport().GetSerial() == serial {
			holders = append(holders, o.Id)
		}
	}
	for _, id := range holders {
		if err := endBrokenAgreements(tx, env, index, id); err != nil {
			return err
		}
	}
	return nil
}

func updateFederationPolicy(tx *memdb.Txn, index uint64, c *trustfedv1.FederationPolicyChange) error {
	r := &Reader{txn: tx}
	p := proto.CloneOf(r.FederationPolicy())
	if n := c.AdminApprovalsRequired; n != nil {
		if active := r.ActiveAdmins(); *n > active {
			return FailedPrecondition("change.update_federation_policy.admin_approvals_required", "%d is more than the %d active admins", *n, active)
		}
		p.AdminApprovalsRequired = *n
	}
	if c.OnboardingCapLevel != nil {
		p.OnboardingCapLevel = *c.OnboardingCapLevel
	}
	if c.ComplianceModes != nil {
		p.ComplianceModes = slices.Sorted(slices.Values(c.ComplianceModes.Modes))
	}
	if c.OnboardingPeriod != nil {
		p.OnboardingPeriod = durationpb.New(c.OnboardingPeriod.AsDuration())
	}
	if c.FreshnessWindow != nil {
		p.FreshnessWindow = durationpb.New(c.FreshnessWindow.AsDuration())
	}
	p.ModifyIndex = index
	return tx.Insert(tablePolicy, p)
}

func applyPutSigningKey(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.PutSigningKey
	if err := decode(env, &c); err != nil {
		return err
	}
	k := c.GetKey()
	if k.GetKeyId() == "" || len(k.GetPrivateSeed()) != 32 {
		return Invalid("key", "needs a key_id and a 32-byte ed25519 seed")
	}
	if r := (&Reader{txn: tx}); len(r.SigningKeys()) > 0 || r.NodeKeysInForce() {
		return FailedPrecondition("key", "the registry already has a signing key or endorsed node keys (no private key enters the state any more)")
	}
	key := proto.CloneOf(k)
	key.CreateTime, key.CreateIndex = stamp(env), index
	return tx.Insert(tableSigningKeys, key)
}
