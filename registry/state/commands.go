package state

import (
	"crypto/sha256"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

func init() {
	registerCommand(commandv1.CommandType_COMMAND_TYPE_CREATE_ORGANIZATION, applyCreateOrganization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_UPDATE_ORGANIZATION, applyUpdateOrganization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_CREATE_AGREEMENT, applyCreateAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN, applyPutToken)
}

func decode(env *commandv1.Envelope, m proto.Message) error {
	if err := proto.Unmarshal(env.Payload, m); err != nil {
		return Invalid("payload", "cannot decode %s: %v", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

func applyCreateOrganization(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	var c commandv1.CreateOrganization
	if err := decode(env, &c); err != nil {
		return err
	}
	in := c.GetOrganization()
	if err := ValidateNewOrganization(in); err != nil {
		return err
	}
	if _, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", in.Id); ok {
		return AlreadyExists("organization_id", "organization %q already exists", in.Id)
	}
	if _, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "name", in.Name); ok {
		return AlreadyExists("name", "an organization named %q already exists", in.Name)
	}
	org := &trustfedv1.Organization{
		Id:            in.Id,
		Name:          in.Name,
		DeclaredLevel: in.DeclaredLevel,
		Status:        trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE,
		CreateTime:    stamp(env),
		UpdateTime:    stamp(env),
		CreateIndex:   index,
		ModifyIndex:   index,
	}
	return tx.Insert(tableOrganizations, org)
}

// ValidateNewOrganization checks the caller-supplied fields of a new organisation.
func ValidateNewOrganization(o *trustfedv1.Organization) error {
	if err := ValidateOrganizationID("organization_id", o.GetId()); err != nil {
		return err
	}
	if err := ValidateName("name", o.GetName()); err != nil {
		return err
	}
	return ValidateLevel("declared_level", o.GetDeclaredLevel())
}

func applyUpdateOrganization(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	var c commandv1.UpdateOrganization
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateOrganizationUpdate(&c); err != nil {
		return err
	}
	cur, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", c.OrganizationId)
	if !ok {
		return NotFound("organization_id", "organization %q does not exist", c.OrganizationId)
	}
	org := proto.CloneOf(cur)
	if c.Name != nil && *c.Name != org.Name {
		if other, taken := first[*trustfedv1.Organization](tx, tableOrganizations, "name", *c.Name); taken && other.Id != org.Id {
			return AlreadyExists("name", "an organization named %q already exists", *c.Name)
		}
		org.Name = *c.Name
	}
	if c.DeclaredLevel != nil {
		org.DeclaredLevel = *c.DeclaredLevel
	}
	if c.Status != nil {
		if org.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED && *c.Status != org.Status {
			return FailedPrecondition("status", "organization %q is revoked; revocation is permanent", org.Id)
		}
		org.Status = *c.Status
	}
	org.UpdateTime = stamp(env)
	org.ModifyIndex = index
	return tx.Insert(tableOrganizations, org)
}

// ValidateOrganizationUpdate checks an update's fields.
func ValidateOrganizationUpdate(c *commandv1.UpdateOrganization) error {
	if err := ValidateOrganizationID("organization_id", c.GetOrganizationId()); err != nil {
		return err
	}
	if c.Name == nil && c.DeclaredLevel == nil && c.Status == nil {
		return Invalid("organization_id", "update changes nothing: set name, declared_level or status")
	}
	if c.Name != nil {
		if err := ValidateName("name", *c.Name); err != nil {
			return err
		}
	}
	if c.DeclaredLevel != nil {
		if err := ValidateLevel("declared_level", *c.DeclaredLevel); err != nil {
			return err
		}
	}
	if c.Status != nil {
		return ValidateStatus("status", *c.Status)
	}
	return nil
}

func applyCreateAgreement(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	var c commandv1.CreateAgreement
	if err := decode(env, &c); err != nil {
		return err
	}
	in := c.GetAgreement()
	if err := ValidateNewAgreement(in); err != nil {
		return err
	}
	if _, ok := first[*trustfedv1.Agreement](tx, tableAgreements, "id", in.Id); ok {
		return AlreadyExists("agreement_id", "agreement %q already exists", in.Id)
	}
	// A slice, not a map: the first missing party must be the same on every replica.
	for _, p := range []struct{ field, id string }{{"organization_a_id", in.OrganizationAId}, {"organization_b_id", in.OrganizationBId}} {
		if _, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", p.id); !ok {
			return NotFound(p.field, "organization %q does not exist", p.id)
		}
	}
	r := &Reader{txn: tx}
	if cur, ok := r.ActiveAgreement(in.OrganizationAId, in.OrganizationBId); ok {
		return AlreadyExists("organization_b_id", "agreement %s between %q and %q is already active", cur.Id, in.OrganizationAId, in.OrganizationBId)
	}
	ag := &trustfedv1.Agreement{
		Id:              in.Id,
		OrganizationAId: in.OrganizationAId,
		OrganizationBId: in.OrganizationBId,
		Status:          trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE,
		CreateTime:      stamp(env),
		UpdateTime:      stamp(env),
		CreateIndex:     index,
		ModifyIndex:     index,
	}
	return tx.Insert(tableAgreements, ag)
}

// ValidateNewAgreement checks the caller-supplied fields of a new agreement.
func ValidateNewAgreement(a *trustfedv1.Agreement) error {
	if err := ValidateAgreementID("agreement_id", a.GetId()); err != nil {
		return err
	}
	if err := ValidateOrganizationID("organization_a_id", a.GetOrganizationAId()); err != nil {
		return err
	}
	if err := ValidateOrganizationID("organization_b_id", a.GetOrganizationBId()); err != nil {
		return err
	}
	if a.OrganizationAId == a.OrganizationBId {
		return Invalid("organization_b_id", "an agreement needs two different organizations")
	}
	return nil
}

func applyPutToken(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	var c commandv1.PutToken
	if err := decode(env, &c); err != nil {
		return err
	}
	t := c.GetToken()
	switch {
	case t.GetId() == "":
		return Invalid("token.id", "is required")
	case len(t.GetSecretSha256()) != sha256.Size:
		return Invalid("token.secret_sha256", "must be %d bytes", sha256.Size)
	case t.GetRole() != commandv1.Role_ROLE_ADMIN:
		return Invalid("token.role", "unsupported role %v", t.GetRole())
	}
	if c.Bootstrap && count(tx, tableTokens) > 0 {
		return FailedPrecondition("token", "the registry is already bootstrapped")
	}
	if _, ok := first[*commandv1.Token](tx, tableTokens, "id", t.Id); ok {
		return AlreadyExists("token.id", "token %q already exists", t.Id)
	}
	tok := proto.CloneOf(t)
	tok.CreateTime = stamp(env)
	tok.CreateIndex = index
	return tx.Insert(tableTokens, tok)
}
