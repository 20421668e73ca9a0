package state

import (
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// MaxOnboardingPeriod bounds the federation's onboarding period.
const MaxOnboardingPeriod = 5 * 365 * 24 * time.Hour

// ValidateIssuer checks the fields of an issuer to accredit.
func ValidateIssuer(v Verifier, is *trustfedv1.Issuer) error {
	if err := ValidateOrganizationID("issuer_id", is.GetId()); err != nil {
		return Invalid("issuer_id", "%q is not a valid issuer id (want ^[a-z][a-z0-9-]{1,62}$)", truncate(is.GetId()))
	}
	if err := ValidateName("name", is.GetName()); err != nil {
		return err
	}
	if _, ok := v.Fingerprint(is.GetPublicKey()); !ok {
		return Invalid("public_key_pem", "is not an ed25519 public key")
	}
	return ValidateLevel("max_level", is.GetMaxLevel())
}

func applyAccreditIssuer(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.AccreditIssuer
	if err := decode(env, &c); err != nil {
		return err
	}
	in := c.GetIssuer()
	if err := ValidateIssuer(v, in); err != nil {
		return err
	}
	if cur, ok := first[*trustfedv1.Issuer](tx, tableIssuers, "id", in.Id); ok && cur.Status == trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED {
		return AlreadyExists("issuer_id", "issuer %q is already accredited", in.Id)
	}
	fp, _ := v.Fingerprint(in.PublicKey)
	is := &trustfedv1.Issuer{
		Id: in.Id, Name: in.Name, PublicKey: in.PublicKey, PublicKeyFingerprint: fp, MaxLevel: in.MaxLevel,
		Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED, AccreditTime: stamp(env),
		CreateIndex: index, ModifyIndex: index,
	}
	return tx.Insert(tableIssuers, is)
}

func applyWithdrawIssuer(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.WithdrawIssuer
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateReason("reason", c.Reason); err != nil {
		return err
	}
	cur, ok := first[*trustfedv1.Issuer](tx, tableIssuers, "id", c.IssuerId)
	if !ok {
		return NotFound("issuer_id", "issuer %q does not exist", c.IssuerId)
	}
	if cur.Status == trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN {
		return FailedPrecondition("issuer_id", "issuer %q is already withdrawn", c.IssuerId)
	}
	is := proto.CloneOf(cur)
	is.Status = trustfedv1.IssuerStatus_ISSUER_STATUS_WITHDRAWN
	is.WithdrawTime, is.WithdrawReason, is.ModifyIndex = stamp(env), c.Reason, index
	if err := tx.Insert(tableIssuers, is); err != nil {
		return err
	}
	// Every organisation holding a passport from this issuer just lost its
	// attested level: end the agreements whose conditions that breaks.
	it, err := tx.Get(tableOrganizations, "issuer", c.IssuerId)
	if err != nil {
		return err
	}
	var ids []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		ids = append(ids, raw.(*trustfedv1.Organization).Id)
	}
	for _, id := range ids {
		if err := terminateBrokenAgreements(tx, env, index, id); err != nil {
			return err
		}
	}
	return nil
}

func applyRevokePassport(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.RevokePassport
	if err := decode(env, &c); err != nil {
		return err
	}
	if c.Serial == "" || len(c.Serial) > 128 {
		return Invalid("serial", "must be 1..128 characters")
	}
	if err := ValidateReason("reason", c.Reason); err != nil {
		return err
	}
	if _, ok := first[*commandv1.RevokedPassport](tx, tableRevoked, "id", c.Serial); ok {
		return AlreadyExists("serial", "passport %s is already revoked", c.Serial)
	}
	if err := tx.Insert(tableRevoked, &commandv1.RevokedPassport{Serial: c.Serial, Reason: c.Reason, RevokeTime: stamp(env), Index: index}); err != nil {
		return err
	}
	it, err := tx.Get(tableOrganizations, "id")
	if err != nil {
		return err
	}
	var holders []string
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if o := raw.(*trustfedv1.Organization); o.GetPassport().GetSerial() == c.Serial {
			holders = append(holders, o.Id)
		}
	}
	for _, id := range holders {
		if err := terminateBrokenAgreements(tx, env, index, id); err != nil {
			return err
		}
	}
	return nil
}

// ValidatePolicyUpdate checks a federation policy update.
func ValidatePolicyUpdate(c *commandv1.UpdateFederationPolicy) error {
	if c.OnboardingCapLevel == nil && c.OnboardingPeriod == nil && c.FreshnessWindow == nil {
		return Invalid("onboarding_cap_level", "update changes nothing: set onboarding_cap_level, onboarding_period or freshness_window")
	}
	if c.FreshnessWindow != nil {
		if err := c.FreshnessWindow.CheckValid(); err != nil {
			return Invalid("freshness_window", "%v", err)
		}
		if d := c.FreshnessWindow.AsDuration(); d < time.Second || d > MaxFreshnessWindow {
			return Invalid("freshness_window", "%s is outside 1s..%s (AG-783: nothing older than 10 minutes)", d, MaxFreshnessWindow)
		}
	}
	if c.OnboardingCapLevel != nil {
		if err := ValidateLevel("onboarding_cap_level", *c.OnboardingCapLevel); err != nil {
			return err
		}
	}
	if c.OnboardingPeriod != nil {
		if err := c.OnboardingPeriod.CheckValid(); err != nil {
			return Invalid("onboarding_period", "%v", err)
		}
		if d := c.OnboardingPeriod.AsDuration(); d < 0 || d > MaxOnboardingPeriod {
			return Invalid("onboarding_period", "%s is outside 0..%s", d, MaxOnboardingPeriod)
		}
	}
	return nil
}

func applyUpdateFederationPolicy(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.UpdateFederationPolicy
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidatePolicyUpdate(&c); err != nil {
		return err
	}
	p := proto.CloneOf((&Reader{txn: tx}).FederationPolicy())
	if c.OnboardingCapLevel != nil {
		p.OnboardingCapLevel = *c.OnboardingCapLevel
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
	if _, ok := (&Reader{txn: tx}).NewestSigningKey(); ok {
		return FailedPrecondition("key", "the registry already has a signing key")
	}
	key := proto.CloneOf(k)
	key.CreateTime, key.CreateIndex = stamp(env), index
	return tx.Insert(tableSigningKeys, key)
}
