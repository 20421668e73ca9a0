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

// commandTypes is the command table inverted: type by payload message name.
var commandTypes = func() map[protoreflect.FullName]commandv1.CommandType {
	m := make(map[protoreflect.FullName]commandv1.CommandType, len(commands))
	for t, c := range commands {
		name := c.payload.ProtoReflect().Descriptor().FullName()
		if _, dup := m[name]; dup {
			panic(fmt.Sprintf("state: payload %s registered for two command types", name))
		}
		m[name] = t
	}
	return m
}()

// newPayload returns an empty payload message of type t (nil if unknown).
func newPayload(t commandv1.CommandType) proto.Message {
	c, ok := commands[t]
	if !ok {
		return nil
	}
	return c.payload.ProtoReflect().New().Interface()
}

func commandType(cmd proto.Message) (commandv1.CommandType, error) {
	if t, ok := commandTypes[cmd.ProtoReflect().Descriptor().FullName()]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("%T is not a registry command", cmd)
}
