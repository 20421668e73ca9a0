package state

import (
	"fmt"
	"net/url"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const maxEndpoints = 16

// CheckRegistration verifies a signed registration against the state view
// at time now and returns the organisation it would create (PENDING). It is
// what the leader runs before proposing and what every replica runs again
// when applying. Every failure names the field and the exact reason.
func CheckRegistration(r *Reader, v Verifier, regBytes, sig []byte, now time.Time) (*trustfedv1.Organization, error) {
	var reg trustfedv1.Registration
	if len(regBytes) == 0 {
		return nil, Invalid("registration", "is required")
	}
	if err := proto.Unmarshal(regBytes, &reg); err != nil {
		return nil, Invalid("registration", "is not a serialized trustfed.v1.Registration: %v", err)
	}
	if err := ValidateOrganizationID("registration.organization_id", reg.OrganizationId); err != nil {
		return nil, err
	}
	if err := ValidateName("registration.name", reg.Name); err != nil {
		return nil, err
	}
	if !ids.Jurisdiction.Match(reg.Jurisdiction) {
		return nil, Invalid("registration.jurisdiction", "%q is not a jurisdiction code (1..64 of A-Z a-z 0-9 -)", truncate(reg.Jurisdiction))
	}
	if err := ValidateLevel("registration.declared_level", reg.DeclaredLevel); err != nil {
		return nil, err
	}
	fp, ok := v.Fingerprint(reg.PublicKey)
	if !ok {
		return nil, Invalid("registration.public_key", "must be a raw 32-byte ed25519 public key")
	}
	if err := ValidateEndpoints("registration.notification_endpoints", reg.NotificationEndpoints); err != nil {
		return nil, err
	}
	if err := ValidateControlProfile("registration.control_profile", reg.ControlProfile); err != nil {
		return nil, err
	}
	if len(reg.Nonce) < 8 || len(reg.Nonce) > 128 {
		return nil, Invalid("registration.nonce", "must be 8..128 characters")
	}
	if err := v.VerifySignature(reg.PublicKey, PurposeRegistration, regBytes, sig); err != nil {
		return nil, Invalid("signature", "does not verify with registration.public_key over the registration bytes: %v", err)
	}
	pp, err := v.VerifyPassport(reg.Passport, reg.OrganizationId, reg.PublicKey, r.Issuer, r.PassportRevoked, now)
	if err != nil {
		return nil, Invalid("registration.passport", "%v", err)
	}
	if reg.DeclaredLevel > pp.Level {
		return nil, Invalid("registration.declared_level", "%d is above the level %d the passport attests", reg.DeclaredLevel, pp.Level)
	}
	if _, taken := r.Organization(reg.OrganizationId); taken {
		return nil, AlreadyExists("registration.organization_id", "organization %q already exists", reg.OrganizationId)
	}
	if _, taken := r.OrganizationByName(reg.Name); taken {
		return nil, AlreadyExists("registration.name", "an organization named %q already exists", reg.Name)
	}
	if other, taken := r.OrganizationByKey(fp); taken {
		return nil, AlreadyExists("registration.public_key", "key %s is already registered to %q", fp, other.Id)
	}
	return &trustfedv1.Organization{
		Id:                    reg.OrganizationId,
		Name:                  reg.Name,
		DeclaredLevel:         reg.DeclaredLevel,
		Status:                trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING,
		PublicKey:             reg.PublicKey,
		PublicKeyFingerprint:  fp,
		Jurisdiction:          reg.Jurisdiction,
		ControlProfile:        reg.ControlProfile,
		NotificationEndpoints: reg.NotificationEndpoints,
		Passport:              pp,
	}, nil
}

// ValidateEndpoints checks notification endpoints: absolute https URLs.
func ValidateEndpoints(field string, eps []string) error {
	if len(eps) > maxEndpoints {
		return Invalid(field, "at most %d endpoints", maxEndpoints)
	}
	for i, e := range eps {
		u, err := url.Parse(e)
		if err != nil || u.Scheme != "https" || u.Host == "" || len(e) > 2048 {
			return Invalid(fmt.Sprintf("%s[%d]", field, i), "%q is not an absolute https URL", truncate(e))
		}
	}
	return nil
}

// ValidateControlProfile checks the shape of a control profile (its meaning
// is the decision issue's resolver).
func ValidateControlProfile(field string, cp *trustfedv1.ControlProfile) error {
	if cp == nil {
		return Invalid(field, "is required")
	}
	seen := map[trustfedv1.PiiType]bool{}
	for i, rule := range cp.GetDataHandling().GetPiiRules() {
		f := fmt.Sprintf("%s.data_handling.pii_rules[%d]", field, i)
		if _, ok := trustfedv1.PiiType_name[int32(rule.Type)]; !ok || rule.Type == trustfedv1.PiiType_PII_TYPE_UNSPECIFIED {
			return Invalid(f+".type", "unknown PII type %d", int32(rule.Type))
		}
		if seen[rule.Type] {
			return Invalid(f+".type", "%v appears twice", rule.Type)
		}
		seen[rule.Type] = true
		if len(rule.ByLevel) != MaxLevel+1 {
			return Invalid(f+".by_level", "needs exactly %d actions (levels 0..%d), got %d", MaxLevel+1, MaxLevel, len(rule.ByLevel))
		}
		for j, a := range rule.ByLevel {
			if _, ok := trustfedv1.PiiAction_name[int32(a)]; !ok || a == trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED {
				return Invalid(fmt.Sprintf("%s.by_level[%d]", f, j), "unknown PII action %d", int32(a))
			}
		}
	}
	for i, region := range cp.GetDataHandling().GetResidencyRegions() {
		if !ids.Jurisdiction.Match(region) {
			return Invalid(fmt.Sprintf("%s.data_handling.residency_regions[%d]", field, i), "%q is not a region code", truncate(region))
		}
	}
	for i, l := range cp.GetActionAuthorization().GetLimits() {
		if l.MaxValue < 0 {
			return Invalid(fmt.Sprintf("%s.action_authorization.limits[%d].max_value", field, i), "must not be negative")
		}
	}
	if cp.GetActionAuthorization().GetDualAuthorizationAboveValue() < 0 {
		return Invalid(field+".action_authorization.dual_authorization_above_value", "must not be negative")
	}
	if d := cp.GetLogging().GetDetail(); d != trustfedv1.LogDetail_LOG_DETAIL_UNSPECIFIED {
		if _, ok := trustfedv1.LogDetail_name[int32(d)]; !ok {
			return Invalid(field+".logging.detail", "unknown log detail %d", int32(d))
		}
	}
	for _, d := range []struct {
		name string
		d    *durationpb.Duration
	}{
		{".escalation.max_escalation_delay", cp.GetEscalation().GetMaxEscalationDelay()},
		{".escalation.incident_notification_deadline", cp.GetEscalation().GetIncidentNotificationDeadline()},
	} {
		if d.d != nil && d.d.AsDuration() < 0 {
			return Invalid(field+d.name, "must not be negative")
		}
	}
	return nil
}

func applyRegisterOrganization(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.RegisterOrganization
	if err := decode(env, &c); err != nil {
		return err
	}
	org, err := CheckRegistration(&Reader{txn: tx}, v, c.Registration, c.Signature, env.Time.AsTime())
	if err != nil {
		return err
	}
	org.CreateTime, org.UpdateTime = stamp(env), stamp(env)
	org.CreateIndex, org.ModifyIndex = index, index
	return tx.Insert(tableOrganizations, org)
}

func applyApproveOrganization(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.ApproveOrganization
	if err := decode(env, &c); err != nil {
		return err
	}
	cur, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", c.OrganizationId)
	if !ok {
		return NotFound("organization_id", "organization %q does not exist", c.OrganizationId)
	}
	if cur.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING {
		return FailedPrecondition("organization_id", "organization %q is not pending approval", c.OrganizationId)
	}
	org := copyOrganization(cur)
	org.Status = trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE
	org.ApproveTime = stamp(env)
	period := (&Reader{txn: tx}).FederationPolicy().GetOnboardingPeriod().AsDuration()
	org.OnboardingUntil = timestamppb.New(env.Time.AsTime().Add(period))
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	return tx.Insert(tableOrganizations, org)
}

// overrideOnboarding lifts org's onboarding cap; by names who approved it.
func overrideOnboarding(tx *memdb.Txn, env *commandv1.Envelope, index uint64, orgID, reason, by string) error {
	const field = "change.override_onboarding.organization_id"
	cur, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", orgID)
	if !ok {
		return NotFound(field, "organization %q does not exist", orgID)
	}
	if cur.OnboardingOverride != nil {
		return FailedPrecondition(field, "onboarding of %q was already overridden", orgID)
	}
	org := copyOrganization(cur)
	org.OnboardingOverride = &trustfedv1.OnboardingOverride{Reason: reason, Principal: by, Time: stamp(env)}
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	return tx.Insert(tableOrganizations, org)
}

// ValidateReason checks a free-text reason that is recorded.
func ValidateReason(field, reason string) error {
	if reason == "" {
		return Invalid(field, "is required")
	}
	return ValidateName(field, reason)
}

// CheckPassportSubmission verifies a passport renewal for org at now.
func CheckPassportSubmission(r *Reader, v Verifier, orgID, token string, sig []byte, now time.Time) (*trustfedv1.Organization, error) {
	cur, ok := r.Organization(orgID)
	if !ok {
		return nil, NotFound("organization_id", "organization %q does not exist", orgID)
	}
	if cur.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED {
		return nil, FailedPrecondition("organization_id", "organization %q is revoked", orgID)
	}
	if err := v.VerifySignature(cur.PublicKey, PurposePassport, []byte(token), sig); err != nil {
		return nil, Invalid("signature", "does not verify with the key registered for %q: %v", orgID, err)
	}
	pp, err := v.VerifyPassport(token, orgID, cur.PublicKey, r.Issuer, r.PassportRevoked, now)
	if err != nil {
		return nil, Invalid("passport", "%v", err)
	}
	if cur.GetPassport().GetSerial() == pp.Serial {
		return nil, AlreadyExists("passport", "passport %s is already the current one", pp.Serial)
	}
	org := proto.CloneOf(cur)
	if cur.Passport != nil {
		org.PassportHistory = append(org.PassportHistory, cur.Passport.Serial)
	}
	org.Passport = pp
	return org, nil
}

func applySubmitPassport(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.SubmitPassport
	if err := decode(env, &c); err != nil {
		return err
	}
	org, err := CheckPassportSubmission(&Reader{txn: tx}, v, c.OrganizationId, c.Passport, c.Signature, env.Time.AsTime())
	if err != nil {
		return err
	}
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	if err := tx.Insert(tableOrganizations, org); err != nil {
		return err
	}
	return endBrokenAgreements(tx, env, index, org.Id)
}
