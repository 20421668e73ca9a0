package state

import (
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
	registerCommand(commandv1.CommandType_COMMAND_TYPE_SUBMIT_PASSPORT, applySubmitPassport)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PROPOSE_AGREEMENT, applyProposeAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_SIGN_AGREEMENT, applySignAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_TERMINATE_AGREEMENT, applyTerminateAgreement)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PUT_SIGNING_KEY, applyPutSigningKey)
	// Applied by the FSM itself (they need its audit log): see FSM.dispatch.
	registerCommand(commandv1.CommandType_COMMAND_TYPE_APPEND_AUDIT, nil)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PUT_CHECKPOINT, nil)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_ADD_COSIGNATURE, nil)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_CREATE_AUTHORIZATION, applyCreateAuthorization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_APPROVE_AUTHORIZATION, applyApproveAuthorization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_CONSUME_AUTHORIZATION, applyConsumeAuthorization)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_PROPOSE_ADMIN_CHANGE, applyProposeAdminChange)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_APPROVE_ADMIN_CHANGE, applyApproveAdminChange)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_BOOTSTRAP_ADMIN, applyBootstrapAdmin)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_OPEN_SESSION, applyOpenSession)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_HEARTBEAT_SESSION, applyHeartbeatSession)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_CLOSE_SESSION, applyCloseSession)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_SWEEP, applySweep)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_RECORD_DELIVERIES, applyRecordDeliveries)
	registerCommand(commandv1.CommandType_COMMAND_TYPE_REVOKE_TOKEN, applyRevokeToken)
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
	if c.Name == cur.Name {
		return FailedPrecondition("name", "organization %q is already named %q", cur.Id, c.Name)
	}
	if other, taken := first[*trustfedv1.Organization](tx, tableOrganizations, "name", c.Name); taken && other.Id != cur.Id {
		return AlreadyExists("name", "an organization named %q already exists", c.Name)
	}
	org := proto.CloneOf(cur)
	org.Name = c.Name
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	return tx.Insert(tableOrganizations, org)
}

// ValidateOrganizationUpdate checks an update's fields.
func ValidateOrganizationUpdate(c *commandv1.UpdateOrganization) error {
	if err := ValidateOrganizationID("organization_id", c.GetOrganizationId()); err != nil {
		return err
	}
	return ValidateName("name", c.GetName())
}
