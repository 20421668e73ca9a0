package state

import (
	"crypto/sha256"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

func init() {
	registerCommand(commandv1.CommandType_COMMAND_TYPE_UPDATE_ORGANIZATION, applyUpdateOrganization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN, applyPutToken)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION, applyRegisterOrganization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION, applyApproveOrganization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_OVERRIDE_ONBOARDING, applyOverrideOnboarding)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_SUBMIT_PASSPORT, applySubmitPassport)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_ACCREDIT_ISSUER, applyAccreditIssuer)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_WITHDRAW_ISSUER, applyWithdrawIssuer)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_REVOKE_PASSPORT, applyRevokePassport)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_UPDATE_FEDERATION_POLICY, applyUpdateFederationPolicy)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PROPOSE_AGREEMENT, applyProposeAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_SIGN_AGREEMENT, applySignAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_TERMINATE_AGREEMENT, applyTerminateAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PUT_SIGNING_KEY, applyPutSigningKey)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_CREATE_AUTHORIZATION, applyCreateAuthorization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_APPROVE_AUTHORIZATION, applyApproveAuthorization)
}

func decode(env *commandv1.Envelope, m proto.Message) error {
	if err := proto.Unmarshal(env.Payload, m); err != nil {
		return Invalid("payload", "cannot decode %s: %v", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}

func applyUpdateOrganization(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
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
	if err := tx.Insert(tableOrganizations, org); err != nil {
		return err
	}
	return terminateBrokenAgreements(tx, env, index, org.Id)
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

func applyPutToken(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
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
