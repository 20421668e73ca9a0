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
	case *commandv1.CreateOrganization:
		return commandv1.CommandType_COMMAND_TYPE_CREATE_ORGANIZATION, nil
	case *commandv1.UpdateOrganization:
		return commandv1.CommandType_COMMAND_TYPE_UPDATE_ORGANIZATION, nil
	case *commandv1.CreateAgreement:
		return commandv1.CommandType_COMMAND_TYPE_CREATE_AGREEMENT, nil
	case *commandv1.PutToken:
		return commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN, nil
	default:
		return 0, fmt.Errorf("%T is not a registry command", cmd)
	}
}
