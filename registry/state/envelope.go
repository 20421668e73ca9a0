package state

import (
	"fmt"
	"time"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// EnvelopeMeta is what the proposer stamps on a command before proposing it.
type EnvelopeMeta struct {
	RequestID string
	Time      time.Time
	Principal string
}

// Encode wraps a command message in an Envelope and serializes it
// deterministically, ready to propose.
func Encode(cmd proto.Message, meta EnvelopeMeta) ([]byte, error) {
	t, err := commandType(cmd)
	if err != nil {
		return nil, err
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("marshal %T: %w", cmd, err)
	}
	env := &commandv1.Envelope{
		Type:      t,
		Payload:   payload,
		RequestId: meta.RequestID,
		Time:      timestamppb.New(meta.Time),
		Principal: meta.Principal,
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("marshal envelope: %w", err)
	}
	return b, nil
}

// payloadTypes maps every command type to its payload message. Append
// only, like CommandType itself.
var payloadTypes = map[commandv1.CommandType]proto.Message{
	commandv1.CommandType_COMMAND_TYPE_UPDATE_ORGANIZATION:   (*commandv1.UpdateOrganization)(nil),
	commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN:             (*commandv1.PutToken)(nil),
	commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION: (*commandv1.RegisterOrganization)(nil),
	commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION:  (*commandv1.ApproveOrganization)(nil),
	commandv1.CommandType_COMMAND_TYPE_SUBMIT_PASSPORT:       (*commandv1.SubmitPassport)(nil),
	commandv1.CommandType_COMMAND_TYPE_PROPOSE_AGREEMENT:     (*commandv1.ProposeAgreement)(nil),
	commandv1.CommandType_COMMAND_TYPE_SIGN_AGREEMENT:        (*commandv1.SignAgreement)(nil),
	commandv1.CommandType_COMMAND_TYPE_TERMINATE_AGREEMENT:   (*commandv1.TerminateAgreement)(nil),
	commandv1.CommandType_COMMAND_TYPE_CREATE_AUTHORIZATION:  (*commandv1.CreateAuthorization)(nil),
	commandv1.CommandType_COMMAND_TYPE_APPROVE_AUTHORIZATION: (*commandv1.ApproveAuthorization)(nil),
	commandv1.CommandType_COMMAND_TYPE_PUT_SIGNING_KEY:       (*commandv1.PutSigningKey)(nil),
	commandv1.CommandType_COMMAND_TYPE_PROPOSE_ADMIN_CHANGE:  (*commandv1.ProposeAdminChange)(nil),
	commandv1.CommandType_COMMAND_TYPE_APPROVE_ADMIN_CHANGE:  (*commandv1.ApproveAdminChange)(nil),
	commandv1.CommandType_COMMAND_TYPE_BOOTSTRAP_ADMIN:       (*commandv1.BootstrapAdmin)(nil),
	commandv1.CommandType_COMMAND_TYPE_OPEN_SESSION:          (*commandv1.OpenSession)(nil),
	commandv1.CommandType_COMMAND_TYPE_HEARTBEAT_SESSION:     (*commandv1.HeartbeatSession)(nil),
	commandv1.CommandType_COMMAND_TYPE_CLOSE_SESSION:         (*commandv1.CloseSession)(nil),
	commandv1.CommandType_COMMAND_TYPE_SWEEP:                 (*commandv1.Sweep)(nil),
	commandv1.CommandType_COMMAND_TYPE_RECORD_DELIVERIES:     (*commandv1.RecordDeliveries)(nil),
	commandv1.CommandType_COMMAND_TYPE_APPEND_AUDIT:          (*commandv1.AppendAudit)(nil),
	commandv1.CommandType_COMMAND_TYPE_PUT_CHECKPOINT:        (*commandv1.PutCheckpoint)(nil),
	commandv1.CommandType_COMMAND_TYPE_ADD_COSIGNATURE:       (*commandv1.AddCosignature)(nil),
	commandv1.CommandType_COMMAND_TYPE_REVOKE_TOKEN:          (*commandv1.RevokeToken)(nil),

	// Member nodes.
	commandv1.CommandType_COMMAND_TYPE_ENROL_MEMBER_NODE:        (*commandv1.EnrolMemberNode)(nil),
	commandv1.CommandType_COMMAND_TYPE_REMOVE_MEMBER_NODE:       (*commandv1.RemoveMemberNode)(nil),
	commandv1.CommandType_COMMAND_TYPE_ISSUE_MEMBER_CERTIFICATE: (*commandv1.IssueMemberCertificate)(nil),

	// Dual authorisation uses.
	commandv1.CommandType_COMMAND_TYPE_CONSUME_AUTHORIZATION: (*commandv1.ConsumeAuthorization)(nil),
	// Organisations' webhook settings.
	commandv1.CommandType_COMMAND_TYPE_SET_WEBHOOK: (*commandv1.SetWebhook)(nil),
}

// commandTypes is payloadTypes inverted, by message name.
var commandTypes = func() map[protoreflect.FullName]commandv1.CommandType {
	m := make(map[protoreflect.FullName]commandv1.CommandType, len(payloadTypes))
	for t, msg := range payloadTypes {
		m[msg.ProtoReflect().Descriptor().FullName()] = t
	}
	return m
}()

// newPayload returns an empty payload message of type t (nil if unknown).
func newPayload(t commandv1.CommandType) proto.Message {
	msg, ok := payloadTypes[t]
	if !ok {
		return nil
	}
	return msg.ProtoReflect().New().Interface()
}

func commandType(cmd proto.Message) (commandv1.CommandType, error) {
	if t, ok := commandTypes[cmd.ProtoReflect().Descriptor().FullName()]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("%T is not a registry command", cmd)
}
