package state

import (
	"strings"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestCommandTableCoversEveryCommandType walks every value of CommandType:
// each one is a command registered once, with its payload, handler and audit
// classification, and a retired number is `reserved` in command.proto (so
// it is no longer a value and cannot be reused).
func TestCommandTableCoversEveryCommandType(t *testing.T) {
	enum := commandv1.CommandType(0).Descriptor()
	values := enum.Values()
	for i := range values.Len() {
		v := values.Get(i)
		t.Run(string(v.Name()), func(t *testing.T) {
			ct := commandv1.CommandType(v.Number())
			if ct == commandv1.CommandType_COMMAND_TYPE_UNSPECIFIED {
				_, ok := commands[ct]
				require.False(t, ok, "UNSPECIFIED is not a command")
				return
			}
			c, ok := commands[ct]
			require.Truef(t, ok, "%s is neither registered in the command table nor reserved in command.proto", v.Name())
			require.Truef(t, c.payload != nil, "%s registers no payload message", v.Name())
			require.NotNil(t, c.apply, "%s registers no handler", v.Name())
			require.Contains(t, []auditClass{auditAsCommand, auditAsEvents, auditNot}, c.audit, "%s has no audit classification", v.Name())
			require.Equal(t, "COMMAND_TYPE_"+upperSnake(string(c.payload.ProtoReflect().Descriptor().Name())), string(v.Name()),
				"a command type carries the payload message of its name")
			got, err := commandType(c.payload)
			require.NoError(t, err)
			require.Equal(t, ct, got, "%s's payload %s maps back to another type", v.Name(), c.payload.ProtoReflect().Descriptor().Name())
		})
	}
	for ct := range commands {
		require.NotNil(t, values.ByNumber(protoreflect.EnumNumber(ct)), "command %d is registered but not a CommandType value", ct)
		require.False(t, reserved(enum, protoreflect.EnumNumber(ct)), "command %d is registered and reserved", ct)
	}
}

// upperSnake turns a message name into an enum value name: PutToken, PUT_TOKEN.
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func reserved(enum protoreflect.EnumDescriptor, n protoreflect.EnumNumber) bool {
	return enum.ReservedRanges().Has(n)
}

// TestRetiredCommandTypesAreReserved: the numbers of the commands retired
// before any release stay reserved, and an envelope carrying one is refused
// on every replica like any unknown type.
func TestRetiredCommandTypesAreReserved(t *testing.T) {
	enum := commandv1.CommandType(0).Descriptor()
	for _, n := range []protoreflect.EnumNumber{1, 3, 7, 9, 10, 11, 12} {
		require.True(t, reserved(enum, n), "retired command type %d is not reserved", n)
		_, ok := commands[commandv1.CommandType(n)]
		require.False(t, ok, "retired command type %d is registered", n)
	}
}
