package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// Admin changes (AG-783 TC5, Scenario C): trust-affecting admin mutations
// take effect only when enough distinct federation admins have signed the
// change's exact bytes, and every replica verifies each signature when it
// applies the command that carries it. A bearer token lets its holder submit
// a change or an approval; only admin keys make it count.
const (
	// DefaultAdminApprovals is the number of distinct admin approvals a
	// change needs unless the federation policy says otherwise.
	DefaultAdminApprovals = 2
	// MaxAdminApprovals bounds admin_approvals_required.
	MaxAdminApprovals = 10
	// MaxAdminChangeLifetime bounds how long a change may wait for approvals.
	MaxAdminChangeLifetime = 7 * 24 * time.Hour
	// maxAdminChangeSize bounds a serialized change.
	maxAdminChangeSize = 64 << 10
)

// AdminChangeID names a change by its serialized bytes.
func AdminChangeID(change []byte) string {
	sum := sha256.Sum256(change)
	return "chg-" + hex.EncodeToString(sum[:8])
}

// ValidateAdminChangeID checks the shape of a change id.
func ValidateAdminChangeID(field, id string) error {
	if !ids.AdminChange.Match(id) {
		return Invalid(field, "%q is not a change id (chg- and 16 hex digits)", truncate(id))
	}
	return nil
}

// ValidateAdminChange decodes a serialized change proposed at now and checks
// every field it sets; errors name the field under "change.".
func ValidateAdminChange(v Verifier, raw []byte, now time.Time) (*trustfedv1.AdminChange, error) {
	if len(raw) == 0 {
		return nil, Invalid("change", "is required")
	}
	if len(raw) > maxAdminChangeSize {
		return nil, Invalid("change", "is %d bytes, at most %d", len(raw), maxAdminChangeSize)
	}
	var c trustfedv1.AdminChange
	if err := proto.Unmarshal(raw, &c); err != nil {
		return nil, Invalid("change", "is not a serialized trustfed.v1.AdminChange: %v", err)
	}
	if err := ValidateReason("change.reason", c.Reason); err != nil {
		return nil, err
	}
	if n := len(c.Nonce); n < 16 || n > 128 {
		return nil, Invalid("change.nonce", "must be 16..128 characters, got %d", n)
	}
	if c.ExpireTime == nil {
		return nil, Invalid("change.expire_time", "is required")
	}
	if err := c.ExpireTime.CheckValid(); err != nil {
		return nil, Invalid("change.expire_time", "%v", err)
	}
	if exp := c.ExpireTime.AsTime(); !exp.After(now) || exp.Sub(now) > MaxAdminChangeLifetime {
		return nil, Invalid("change.expire_time", "%s is not within (now, now+%s] (now is %s)",
			exp.UTC().Format(time.RFC3339), MaxAdminChangeLifetime, now.UTC().Format(time.RFC3339))
	}
	if err := validateChangeBody(v, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func validateChangeBody(v Verifier, c *trustfedv1.AdminChange) error {
	switch ch := c.Change.(type) {
	case *trustfedv1.AdminChange_SetDeclaredLevel:
		if err := ValidateOrganizationID("change.set_declared_level.organization_id", ch.SetDeclaredLevel.OrganizationId); err != nil {
			return err
		}
		return ValidateLevel("change.set_declared_level.level", ch.SetDeclaredLevel.Level)
	case *trustfedv1.AdminChange_SetOrganizationStatus:
		s := ch.SetOrganizationStatus
		if err := ValidateOrganizationID("change.set_organization_status.organization_id", s.OrganizationId); err != nil {
			return err
		}
		switch s.Status {
		case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED,
			trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED:
			return nil
		default:
			return Invalid("change.set_organization_status.status", "must be ACTIVE, SUSPENDED or REVOKED, got %v", s.Status)
		}
	case *trustfedv1.AdminChange_OverrideOnboarding:
		return ValidateOrganizationID("change.override_onboarding.organization_id", ch.OverrideOnboarding.OrganizationId)
	case *trustfedv1.AdminChange_AccreditIssuer:
		a := ch.AccreditIssuer
		if err := ValidateOrganizationID("change.accredit_issuer.issuer_id", a.IssuerId); err != nil {
			return Invalid("change.accredit_issuer.issuer_id", "%q is not a valid issuer id (want ^[a-z][a-z0-9-]{1,62}$)", truncate(a.IssuerId))
		}
		if err := ValidateName("change.accredit_issuer.name", a.Name); err != nil {
			return err
		}
		if _, ok := v.Fingerprint(a.PublicKey); !ok {
			return Invalid("change.accredit_issuer.public_key", "must be a raw 32-byte ed25519 public key")
		}
		return ValidateLevel("change.accredit_issuer.max_level", a.MaxLevel)
	case *trustfedv1.AdminChange_WithdrawIssuer:
		return ValidateOrganizationID("change.withdraw_issuer.issuer_id", ch.WithdrawIssuer.IssuerId)
	case *trustfedv1.AdminChange_RevokePassport:
		if s := ch.RevokePassport.Serial; s == "" || len(s) > 128 {
			return Invalid("change.revoke_passport.serial", "must be 1..128 characters")
		}
		return nil
	case *trustfedv1.AdminChange_UpdateFederationPolicy:
		return ValidatePolicyChange("change.update_federation_policy.", ch.UpdateFederationPolicy)
	case *trustfedv1.AdminChange_AddAdmin:
		a := ch.AddAdmin
		if err := ValidateOrganizationID("change.add_admin.admin_id", a.AdminId); err != nil {
			return Invalid("change.add_admin.admin_id", "%q is not a valid admin id (want ^[a-z][a-z0-9-]{1,62}$)", truncate(a.AdminId))
		}
		if err := ValidateName("change.add_admin.name", a.Name); err != nil {
			return err
		}
		if _, ok := v.Fingerprint(a.PublicKey); !ok {
			return Invalid("change.add_admin.public_key", "must be a raw 32-byte ed25519 public key")
		}
		return nil
	case *trustfedv1.AdminChange_RemoveAdmin:
		return ValidateOrganizationID("change.remove_admin.admin_id", ch.RemoveAdmin.AdminId)
	case *trustfedv1.AdminChange_EndorseNodeKey:
		return validateEndorseNodeKey(v, ch.EndorseNodeKey)
	case *trustfedv1.AdminChange_RevokeNodeKey:
		return validateRevokeNodeKey(ch.RevokeNodeKey)
	default:
		return Invalid("change", "sets no change (one of set_declared_level, set_organization_status, override_onboarding, accredit_issuer, withdraw_issuer, revoke_passport, update_federation_policy, add_admin, remove_admin, endorse_node_key, revoke_node_key)")
	}
}

// ValidatePolicyChange checks a federation policy change; field names are
// prefixed with prefix.
func ValidatePolicyChange(prefix string, c *trustfedv1.FederationPolicyChange) error {
	if c.OnboardingCapLevel == nil && c.OnboardingPeriod == nil && c.FreshnessWindow == nil && c.AdminApprovalsRequired == nil && c.ComplianceModes == nil {
		return Invalid(prefix+"onboarding_cap_level", "change sets nothing: set onboarding_cap_level, onboarding_period, freshness_window, admin_approvals_required or compliance_modes")
	}
	if c.ComplianceModes != nil {
		seen := map[trustfedv1.ComplianceMode]bool{}
		for i, m := range c.ComplianceModes.Modes {
			if _, ok := trustfedv1.ComplianceMode_name[int32(m)]; !ok || m == trustfedv1.ComplianceMode_COMPLIANCE_MODE_UNSPECIFIED {
				return Invalid(fmt.Sprintf("%scompliance_modes.modes[%d]", prefix, i), "unknown compliance mode %d", int32(m))
			}
			if seen[m] {
				return Invalid(fmt.Sprintf("%scompliance_modes.modes[%d]", prefix, i), "%s given twice", m)
			}
			seen[m] = true
		}
	}
	if c.FreshnessWindow != nil {
		if err := c.FreshnessWindow.CheckValid(); err != nil {
			return Invalid(prefix+"freshness_window", "%v", err)
		}
		if d := c.FreshnessWindow.AsDuration(); d < time.Second || d > MaxFreshnessWindow {
			return Invalid(prefix+"freshness_window", "%s is outside 1s..%s (AG-783: nothing older than 10 minutes)", d, MaxFreshnessWindow)
		}
	}
	if c.OnboardingCapLevel != nil {
		if err := ValidateLevel(prefix+"onboarding_cap_level", *c.OnboardingCapLevel); err != nil {
			return err
		}
	}
	if c.OnboardingPeriod != nil {
		if err := c.OnboardingPeriod.CheckValid(); err != nil {
			return Invalid(prefix+"onboarding_period", "%v", err)
		}
		if d := c.OnboardingPeriod.AsDuration(); d < 0 || d > MaxOnboardingPeriod {
			return Invalid(prefix+"onboarding_period", "%s is outside 0..%s", d, MaxOnboardingPeriod)
		}
	}
	if n := c.AdminApprovalsRequired; n != nil && (*n < 1 || *n > MaxAdminApprovals) {
		return Invalid(prefix+"admin_approvals_required", "%d is outside 1..%d", *n, MaxAdminApprovals)
	}
	return nil
}

// AdminApprovalsRequired is the federation's admin quorum.
func (r *Reader) AdminApprovalsRequired() uint32 {
	if n := r.FederationPolicy().GetAdminApprovalsRequired(); n > 0 {
		return n
	}
	return DefaultAdminApprovals
}

// Admin returns an admin (active or removed) by id.
func (r *Reader) Admin(id string) (*trustfedv1.Admin, bool) {
	return first[*trustfedv1.Admin](r.txn, tableAdmins, "id", id)
}

// AdminByKey returns the admin whose key has fingerprint fp.
func (r *Reader) AdminByKey(fp string) (*trustfedv1.Admin, bool) {
	return first[*trustfedv1.Admin](r.txn, tableAdmins, "key", fp)
}

// Admins lists every admin, active and removed, in id order.
func (r *Reader) Admins() []*trustfedv1.Admin {
	it, err := r.txn.Get(tableAdmins, "id")
	if err != nil {
		return nil
	}
	var out []*trustfedv1.Admin
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*trustfedv1.Admin))
	}
	return out
}

// ActiveAdmins counts the admins whose approvals count.
func (r *Reader) ActiveAdmins() uint32 {
	var n uint32
	for _, a := range r.Admins() {
		if a.Status == trustfedv1.AdminStatus_ADMIN_STATUS_ACTIVE {
			n++
		}
	}
	return n
}

// AdminChange returns a change record as stored (status PENDING or APPLIED;
// see ChangeStatus for expiry).
func (r *Reader) AdminChange(id string) (*trustfedv1.AdminChangeRecord, bool) {
	return first[*trustfedv1.AdminChangeRecord](r.txn, tableAdminChanges, "id", id)
}

// AdminChanges lists change records in id order after the id after, at most
// limit; pendingOnly keeps those still waiting for approvals at now.
func (r *Reader) AdminChanges(after string, limit int, pendingOnly bool, now time.Time) (out []*trustfedv1.AdminChangeRecord, next string) {
	var keep func(*trustfedv1.AdminChangeRecord) bool
	if pendingOnly {
		keep = func(rec *trustfedv1.AdminChangeRecord) bool {
			return ChangeStatus(rec, now) == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING
		}
	}
	return page(r.txn, tableAdminChanges, after, limit, (*trustfedv1.AdminChangeRecord).GetId, keep)
}

// ChangeStatus is a record's status at now: a pending change past its
// expire_time is EXPIRED.
func ChangeStatus(rec *trustfedv1.AdminChangeRecord, now time.Time) trustfedv1.AdminChangeStatus {
	if rec.Status != trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING {
		return rec.Status
	}
	var c trustfedv1.AdminChange
	if err := proto.Unmarshal(rec.Change, &c); err == nil && c.ExpireTime != nil && !now.Before(c.ExpireTime.AsTime()) {
		return trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_EXPIRED
	}
	return rec.Status
}

// approvalsRequired is how many distinct active admins must approve c. While
// a federation has fewer admins than its policy asks for, enrolling an admin
// needs every current admin (and the very first admin approves their own
// enrolment); any other change waits until enough admins are enrolled.
func approvalsRequired(r *Reader, c *trustfedv1.AdminChange) (uint32, error) {
	active, quorum := r.ActiveAdmins(), r.AdminApprovalsRequired()
	if c.GetAddAdmin() != nil && active < quorum {
		return max(active, 1), nil
	}
	if active < quorum {
		return 0, FailedPrecondition("change", "the federation policy requires %d admin approvals but only %d admins are enrolled; enrol more admins first", quorum, active)
	}
	return quorum, nil
}

// firstAdmin reports whether c enrols the federation's first admin with
// key pub (who then approves their own enrolment).
func firstAdmin(r *Reader, c *trustfedv1.AdminChange, pub []byte) bool {
	add := c.GetAddAdmin()
	return add != nil && r.ActiveAdmins() == 0 && bytes.Equal(add.PublicKey, pub)
}

// verifyApproval checks one admin's signature over a change's bytes and
// returns the approval to record.
func verifyApproval(r *Reader, v Verifier, env *commandv1.Envelope, index uint64, raw []byte, c *trustfedv1.AdminChange, sig *trustfedv1.AdminSignature) (*trustfedv1.AdminApproval, error) {
	fp, ok := v.Fingerprint(sig.GetPublicKey())
	if !ok {
		return nil, Invalid("approval.public_key", "must be a raw 32-byte ed25519 public key")
	}
	var adminID string
	if a, ok := r.AdminByKey(fp); ok && a.Status == trustfedv1.AdminStatus_ADMIN_STATUS_ACTIVE {
		adminID = a.Id
	} else if firstAdmin(r, c, sig.PublicKey) {
		adminID = c.GetAddAdmin().AdminId
	} else {
		return nil, PermissionDenied("approval.public_key", "key %s is not the key of an active federation admin", fp)
	}
	if err := v.VerifySignature(sig.PublicKey, PurposeAdminChange, raw, sig.GetSignature()); err != nil {
		return nil, Invalid("approval.signature", "does not verify with admin %q's key over the change bytes: %v", adminID, err)
	}
	return &trustfedv1.AdminApproval{
		AdminId: adminID, PublicKeyFingerprint: fp, Signature: sig.Signature,
		ApproveTime: stamp(env), Principal: env.Principal, Index: index,
	}, nil
}

// countingApprovals returns the ids of the approvers whose approvals count
// now: admins still active (or the first admin approving their enrolment).
func countingApprovals(r *Reader, c *trustfedv1.AdminChange, rec *trustfedv1.AdminChangeRecord) []string {
	bootstrap := c.GetAddAdmin() != nil && r.ActiveAdmins() == 0
	var ids []string
	for _, a := range rec.Approvals {
		if adm, ok := r.Admin(a.AdminId); ok && adm.Status == trustfedv1.AdminStatus_ADMIN_STATUS_ACTIVE && adm.PublicKeyFingerprint == a.PublicKeyFingerprint {
			ids = append(ids, a.AdminId)
		} else if bootstrap && a.AdminId == c.GetAddAdmin().AdminId {
			ids = append(ids, a.AdminId)
		}
	}
	return ids
}

func applyProposeAdminChange(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var cmd commandv1.ProposeAdminChange
	if err := decode(env, &cmd); err != nil {
		return err
	}
	r := &Reader{txn: tx}
	c, err := ValidateAdminChange(v, cmd.Change, env.Time.AsTime())
	if err != nil {
		return err
	}
	id := AdminChangeID(cmd.Change)
	if _, ok := r.AdminChange(id); ok {
		return AlreadyExists("change", "change %s was already proposed", id)
	}
	appr, err := verifyApproval(r, v, env, index, cmd.Change, c, cmd.Approval)
	if err != nil {
		return err
	}
	rec := &trustfedv1.AdminChangeRecord{
		Id: id, Change: cmd.Change, Status: trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING,
		Approvals: []*trustfedv1.AdminApproval{appr}, Proposer: env.Principal, ProposeTime: stamp(env), CreateIndex: index,
	}
	return settleAdminChange(tx, env, index, v, rec, c)
}

func applyApproveAdminChange(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var cmd commandv1.ApproveAdminChange
	if err := decode(env, &cmd); err != nil {
		return err
	}
	if err := ValidateAdminChangeID("change_id", cmd.ChangeId); err != nil {
		return err
	}
	r := &Reader{txn: tx}
	cur, ok := r.AdminChange(cmd.ChangeId)
	if !ok {
		return NotFound("change_id", "change %s does not exist", cmd.ChangeId)
	}
	var c trustfedv1.AdminChange
	if err := proto.Unmarshal(cur.Change, &c); err != nil {
		return fmt.Errorf("stored change %s does not decode: %w", cur.Id, err)
	}
	switch ChangeStatus(cur, env.Time.AsTime()) {
	case trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED:
		return FailedPrecondition("change_id", "change %s was already applied at index %d", cur.Id, cur.ApplyIndex)
	case trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_EXPIRED:
		return FailedPrecondition("change_id", "change %s expired at %s", cur.Id, c.ExpireTime.AsTime().UTC().Format(time.RFC3339))
	}
	appr, err := verifyApproval(r, v, env, index, cur.Change, &c, cmd.Approval)
	if err != nil {
		return err
	}
	for _, a := range cur.Approvals {
		if a.AdminId == appr.AdminId {
			return AlreadyExists("approval", "admin %q already approved change %s; a second approval must come from another admin", a.AdminId, cur.Id)
		}
	}
	rec := proto.CloneOf(cur)
	rec.Approvals = append(rec.Approvals, appr)
	return settleAdminChange(tx, env, index, v, rec, &c)
}

// settleAdminChange stores rec, first applying its change when the approvals
// that count reach the quorum. The change and the approval that completed it
// commit in the same transaction, or neither does.
func settleAdminChange(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier, rec *trustfedv1.AdminChangeRecord, c *trustfedv1.AdminChange) error {
	r := &Reader{txn: tx}
	need, err := approvalsRequired(r, c)
	if err != nil {
		return err
	}
	rec.ApprovalsRequired = need
	if approvers := countingApprovals(r, c, rec); uint32(len(approvers)) >= need {
		by := fmt.Sprintf("admins %s (change %s)", strings.Join(approvers, ", "), rec.Id)
		if err := executeAdminChange(tx, env, index, v, rec.Id, by, c); err != nil {
			return err
		}
		rec.Status = trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED
		rec.ApplyTime, rec.ApplyIndex = stamp(env), index
	}
	return tx.Insert(tableAdminChanges, rec)
}

// executeAdminChange makes the change; by names the approving admins.
func executeAdminChange(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier, changeID, by string, c *trustfedv1.AdminChange) error {
	switch ch := c.Change.(type) {
	case *trustfedv1.AdminChange_SetDeclaredLevel:
		return setDeclaredLevel(tx, env, index, ch.SetDeclaredLevel, c.Reason)
	case *trustfedv1.AdminChange_SetOrganizationStatus:
		return setOrganizationStatus(tx, env, index, ch.SetOrganizationStatus, c.Reason)
	case *trustfedv1.AdminChange_OverrideOnboarding:
		return overrideOnboarding(tx, env, index, ch.OverrideOnboarding.OrganizationId, c.Reason, by)
	case *trustfedv1.AdminChange_AccreditIssuer:
		return accreditIssuer(tx, env, index, v, ch.AccreditIssuer)
	case *trustfedv1.AdminChange_WithdrawIssuer:
		return withdrawIssuer(tx, env, index, ch.WithdrawIssuer.IssuerId, c.Reason)
	case *trustfedv1.AdminChange_RevokePassport:
		return revokePassport(tx, env, index, ch.RevokePassport.Serial, c.Reason)
	case *trustfedv1.AdminChange_UpdateFederationPolicy:
		return updateFederationPolicy(tx, index, ch.UpdateFederationPolicy)
	case *trustfedv1.AdminChange_AddAdmin:
		a := ch.AddAdmin
		fp, _ := v.Fingerprint(a.PublicKey)
		return insertAdmin(tx, env, index, &trustfedv1.Admin{Id: a.AdminId, Name: a.Name, PublicKey: a.PublicKey, PublicKeyFingerprint: fp, AddedByChange: changeID})
	case *trustfedv1.AdminChange_RemoveAdmin:
		return removeAdmin(tx, env, index, ch.RemoveAdmin.AdminId)
	case *trustfedv1.AdminChange_EndorseNodeKey:
		return endorseNodeKey(tx, env, index, v, changeID, ch.EndorseNodeKey)
	case *trustfedv1.AdminChange_RevokeNodeKey:
		return revokeNodeKey(tx, index, changeID, ch.RevokeNodeKey)
	default:
		return Invalid("change", "sets no change")
	}
}

func insertAdmin(tx *memdb.Txn, env *commandv1.Envelope, index uint64, a *trustfedv1.Admin) error {
	r := &Reader{txn: tx}
	if _, ok := r.Admin(a.Id); ok {
		return AlreadyExists("change.add_admin.admin_id", "admin %q already exists (ids are never reused)", a.Id)
	}
	if other, ok := r.AdminByKey(a.PublicKeyFingerprint); ok {
		return AlreadyExists("change.add_admin.public_key", "key %s already belongs to admin %q", a.PublicKeyFingerprint, other.Id)
	}
	a.Status = trustfedv1.AdminStatus_ADMIN_STATUS_ACTIVE
	a.AddTime, a.CreateIndex, a.ModifyIndex = stamp(env), index, index
	return tx.Insert(tableAdmins, a)
}

func removeAdmin(tx *memdb.Txn, env *commandv1.Envelope, index uint64, id string) error {
	r := &Reader{txn: tx}
	cur, ok := r.Admin(id)
	if !ok {
		return NotFound("change.remove_admin.admin_id", "admin %q does not exist", id)
	}
	if cur.Status != trustfedv1.AdminStatus_ADMIN_STATUS_ACTIVE {
		return FailedPrecondition("change.remove_admin.admin_id", "admin %q was already removed", id)
	}
	if active, quorum := r.ActiveAdmins(), r.AdminApprovalsRequired(); active-1 < quorum {
		return FailedPrecondition("change.remove_admin.admin_id", "removing %q would leave %d admins, fewer than the %d approvals the policy requires; lower admin_approvals_required or enrol another admin first", id, active-1, quorum)
	}
	a := proto.CloneOf(cur)
	a.Status = trustfedv1.AdminStatus_ADMIN_STATUS_REMOVED
	a.RemoveTime, a.ModifyIndex = stamp(env), index
	return tx.Insert(tableAdmins, a)
}

func setDeclaredLevel(tx *memdb.Txn, env *commandv1.Envelope, index uint64, c *trustfedv1.SetDeclaredLevelChange, reason string) error {
	const field = "change.set_declared_level.organization_id"
	cur, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", c.OrganizationId)
	if !ok {
		return NotFound(field, "organization %q does not exist", c.OrganizationId)
	}
	if cur.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED {
		return FailedPrecondition(field, "organization %q is revoked", c.OrganizationId)
	}
	if cur.DeclaredLevel == c.Level {
		return FailedPrecondition("change.set_declared_level.level", "organization %q is already declared at level %d", c.OrganizationId, c.Level)
	}
	partners := partnerIDs((&Reader{txn: tx}).Graph(cur.Id))
	org := copyOrganization(cur)
	org.DeclaredLevel = c.Level
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	if err := tx.Insert(tableOrganizations, org); err != nil {
		return err
	}
	if err := endBrokenAgreements(tx, env, index, org.Id); err != nil {
		return err
	}
	ev := &trustfedv1.Event{Kind: trustfedv1.EventKind_EVENT_KIND_LEVEL_CHANGE, OrganizationId: org.Id,
		Reason: fmt.Sprintf("declared level %d -> %d: %s", cur.DeclaredLevel, c.Level, reason)}
	return newCascade(tx, env, index, ev, partners)
}

func setOrganizationStatus(tx *memdb.Txn, env *commandv1.Envelope, index uint64, c *trustfedv1.SetOrganizationStatusChange, reason string) error {
	const field = "change.set_organization_status.organization_id"
	cur, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", c.OrganizationId)
	if !ok {
		return NotFound(field, "organization %q does not exist", c.OrganizationId)
	}
	switch {
	case cur.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED:
		return FailedPrecondition(field, "organization %q is revoked; revocation is permanent", c.OrganizationId)
	case cur.Status == c.Status:
		return FailedPrecondition("change.set_organization_status.status", "organization %q is already %v", c.OrganizationId, c.Status)
	case cur.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING && c.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE:
		return FailedPrecondition("change.set_organization_status.status", "organization %q is pending: approve its registration instead (onboarding starts then)", c.OrganizationId)
	}
	org := copyOrganization(cur)
	org.Status = c.Status
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	if err := tx.Insert(tableOrganizations, org); err != nil {
		return err
	}
	if c.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
		return nil // reactivated: its ended agreements stay ended
	}
	return cutOff(tx, env, index, org.Id, c.Status, reason)
}

func applyBootstrapAdmin(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.BootstrapAdmin
	if err := decode(env, &c); err != nil {
		return err
	}
	a := c.GetAdmin()
	if err := ValidateOrganizationID("admin.id", a.GetId()); err != nil {
		return err
	}
	if err := ValidateName("admin.name", a.GetName()); err != nil {
		return err
	}
	fp, ok := v.Fingerprint(a.GetPublicKey())
	if !ok {
		return Invalid("admin.public_key", "must be a raw 32-byte ed25519 public key")
	}
	if c.ApprovalsRequired < 1 || c.ApprovalsRequired > MaxAdminApprovals {
		return Invalid("approvals_required", "%d is outside 1..%d", c.ApprovalsRequired, MaxAdminApprovals)
	}
	if count(tx, tableAdmins) > 0 {
		return FailedPrecondition("admin", "the federation already has admins")
	}
	if err := insertAdmin(tx, env, index, &trustfedv1.Admin{Id: a.Id, Name: a.Name, PublicKey: a.PublicKey, PublicKeyFingerprint: fp, AddedByChange: "bootstrap"}); err != nil {
		return err
	}
	n := c.ApprovalsRequired
	return updateFederationPolicy(tx, index, &trustfedv1.FederationPolicyChange{AdminApprovalsRequired: &n})
}
