package state

import (
	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// commands is the command table: every Raft command is one entry, carrying
// its payload message, the handler that applies it and how the audit log
// records it. Adding a command is one entry here (and its CommandType value,
// appended in command.proto); retiring one removes its entry and makes its
// number `reserved` in command.proto. TestCommandTableCoversEveryCommandType
// checks the two agree.
var commands = map[commandv1.CommandType]command{
	commandv1.CommandType_COMMAND_TYPE_UPDATE_ORGANIZATION:      {payload: (*commandv1.UpdateOrganization)(nil), apply: pure(applyUpdateOrganization), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN:                {payload: (*commandv1.PutToken)(nil), apply: pure(applyPutToken), audit: auditAsCommand, redact: redactPutToken},
	commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION:    {payload: (*commandv1.RegisterOrganization)(nil), apply: pure(applyRegisterOrganization), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION:     {payload: (*commandv1.ApproveOrganization)(nil), apply: pure(applyApproveOrganization), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_SUBMIT_PASSPORT:          {payload: (*commandv1.SubmitPassport)(nil), apply: pure(applySubmitPassport), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_PROPOSE_AGREEMENT:        {payload: (*commandv1.ProposeAgreement)(nil), apply: pure(applyProposeAgreement), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_SIGN_AGREEMENT:           {payload: (*commandv1.SignAgreement)(nil), apply: pure(applySignAgreement), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_TERMINATE_AGREEMENT:      {payload: (*commandv1.TerminateAgreement)(nil), apply: pure(applyTerminateAgreement), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_PUT_SIGNING_KEY:          {payload: (*commandv1.PutSigningKey)(nil), apply: pure(applyPutSigningKey), audit: auditAsCommand, redact: redactPutSigningKey},
	commandv1.CommandType_COMMAND_TYPE_CREATE_AUTHORIZATION:     {payload: (*commandv1.CreateAuthorization)(nil), apply: pure(applyCreateAuthorization), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_APPROVE_AUTHORIZATION:    {payload: (*commandv1.ApproveAuthorization)(nil), apply: pure(applyApproveAuthorization), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_PROPOSE_ADMIN_CHANGE:     {payload: (*commandv1.ProposeAdminChange)(nil), apply: pure(applyProposeAdminChange), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_APPROVE_ADMIN_CHANGE:     {payload: (*commandv1.ApproveAdminChange)(nil), apply: pure(applyApproveAdminChange), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_BOOTSTRAP_ADMIN:          {payload: (*commandv1.BootstrapAdmin)(nil), apply: pure(applyBootstrapAdmin), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_OPEN_SESSION:             {payload: (*commandv1.OpenSession)(nil), apply: pure(applyOpenSession), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_HEARTBEAT_SESSION:        {payload: (*commandv1.HeartbeatSession)(nil), apply: pure(applyHeartbeatSession), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_CLOSE_SESSION:            {payload: (*commandv1.CloseSession)(nil), apply: pure(applyCloseSession), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_SWEEP:                    {payload: (*commandv1.Sweep)(nil), apply: pure(applySweep), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_RECORD_DELIVERIES:        {payload: (*commandv1.RecordDeliveries)(nil), apply: pure(applyRecordDeliveries), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_APPEND_AUDIT:             {payload: (*commandv1.AppendAudit)(nil), apply: (*FSM).applyAppendAudit, audit: auditAsEvents},
	commandv1.CommandType_COMMAND_TYPE_PUT_CHECKPOINT:           {payload: (*commandv1.PutCheckpoint)(nil), apply: (*FSM).applyCheckpoint, audit: auditNot},
	commandv1.CommandType_COMMAND_TYPE_ADD_COSIGNATURE:          {payload: (*commandv1.AddCosignature)(nil), apply: (*FSM).applyAddCosignature, audit: auditNot},
	commandv1.CommandType_COMMAND_TYPE_REVOKE_TOKEN:             {payload: (*commandv1.RevokeToken)(nil), apply: pure(applyRevokeToken), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_ENROL_MEMBER_NODE:        {payload: (*commandv1.EnrolMemberNode)(nil), apply: pure(applyEnrolMemberNode), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_REMOVE_MEMBER_NODE:       {payload: (*commandv1.RemoveMemberNode)(nil), apply: pure(applyRemoveMemberNode), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_ISSUE_MEMBER_CERTIFICATE: {payload: (*commandv1.IssueMemberCertificate)(nil), apply: pure(applyIssueMemberCertificate), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_CONSUME_AUTHORIZATION:    {payload: (*commandv1.ConsumeAuthorization)(nil), apply: pure(applyConsumeAuthorization), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_SET_WEBHOOK:              {payload: (*commandv1.SetWebhook)(nil), apply: pure(applySetWebhook), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_REPORT_DIVERGENCE:        {payload: (*commandv1.ReportDivergence)(nil), apply: pure(applyReportDivergence), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_RETIRE_REGISTRY_SEED:     {payload: (*commandv1.RetireRegistrySeed)(nil), apply: pure(applyRetireRegistrySeed), audit: auditAsCommand},
	commandv1.CommandType_COMMAND_TYPE_BOOTSTRAP_NODE_KEY:       {payload: (*commandv1.BootstrapNodeKey)(nil), apply: pure(applyBootstrapNodeKey), audit: auditAsCommand, redact: redactBootstrapNodeKey},
	commandv1.CommandType_COMMAND_TYPE_IMPORT_AGREEMENTS:        {payload: (*commandv1.ImportAgreements)(nil), apply: pure(applyImportAgreements), audit: auditAsCommand},
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
	org := copyOrganization(cur)
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
