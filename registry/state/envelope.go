package state

import (
	"fmt"
	"time"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/proto"
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

func commandType(cmd proto.Message) (commandv1.CommandType, error) {
	switch cmd.(type) {
	case *commandv1.UpdateOrganization:
		return commandv1.CommandType_COMMAND_TYPE_UPDATE_ORGANIZATION, nil
	case *commandv1.PutToken:
		return commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN, nil
	case *commandv1.RegisterOrganization:
		return commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION, nil
	case *commandv1.ApproveOrganization:
		return commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION, nil
	case *commandv1.SubmitPassport:
		return commandv1.CommandType_COMMAND_TYPE_SUBMIT_PASSPORT, nil
	case *commandv1.ProposeAgreement:
		return commandv1.CommandType_COMMAND_TYPE_PROPOSE_AGREEMENT, nil
	case *commandv1.SignAgreement:
		return commandv1.CommandType_COMMAND_TYPE_SIGN_AGREEMENT, nil
	case *commandv1.TerminateAgreement:
		return commandv1.CommandType_COMMAND_TYPE_TERMINATE_AGREEMENT, nil
	case *commandv1.CreateAuthorization:
		return commandv1.CommandType_COMMAND_TYPE_CREATE_AUTHORIZATION, nil
	case *commandv1.ApproveAuthorization:
		return commandv1.CommandType_COMMAND_TYPE_APPROVE_AUTHORIZATION, nil
	case *commandv1.PutSigningKey:
		return commandv1.CommandType_COMMAND_TYPE_PUT_SIGNING_KEY, nil
	case *commandv1.ProposeAdminChange:
		return commandv1.CommandType_COMMAND_TYPE_PROPOSE_ADMIN_CHANGE, nil
	case *commandv1.ApproveAdminChange:
		return commandv1.CommandType_COMMAND_TYPE_APPROVE_ADMIN_CHANGE, nil
	case *commandv1.BootstrapAdmin:
		return commandv1.CommandType_COMMAND_TYPE_BOOTSTRAP_ADMIN, nil
	case *commandv1.OpenSession:
		return commandv1.CommandType_COMMAND_TYPE_OPEN_SESSION, nil
	case *commandv1.HeartbeatSession:
		return commandv1.CommandType_COMMAND_TYPE_HEARTBEAT_SESSION, nil
	case *commandv1.CloseSession:
		return commandv1.CommandType_COMMAND_TYPE_CLOSE_SESSION, nil
	case *commandv1.Sweep:
		return commandv1.CommandType_COMMAND_TYPE_SWEEP, nil
	case *commandv1.RecordDeliveries:
		return commandv1.CommandType_COMMAND_TYPE_RECORD_DELIVERIES, nil
	default:
		return 0, fmt.Errorf("%T is not a registry command", cmd)
	}
}
