package state

import (
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// fillAll sets every field of m (recursively, one list element each) to a
// value other than its default.
func fillAll(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil {
			continue
		}
		switch {
		case fd.IsMap():
			continue
		case fd.IsList():
			l := m.Mutable(fd).List()
			if fd.Kind() == protoreflect.MessageKind {
				e := l.NewElement()
				if depth < 3 {
					fillAll(e.Message(), depth+1)
				}
				l.Append(e)
			} else {
				l.Append(scalar(fd, i))
			}
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			if depth < 3 {
				fillAll(m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, scalar(fd, i))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, i int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("s" + string(rune('a'+i%26)))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte{byte(i + 1)})
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(i + 1))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(int64(i + 1))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(i + 1))
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(i + 1))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(i + 1))
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(i + 1))
	}
	panic("unhandled kind " + fd.Kind().String())
}

// TestCopyOrganization: the shallow copy keeps every field of an
// organisation (a field added to the message and not to copyOrganization
// fails here) and its unknown fields, encodes byte for byte as the source,
// and replacing its top-level fields leaves the source as it was.
func TestCopyOrganization(t *testing.T) {
	src := &trustfedv1.Organization{}
	fillAll(src.ProtoReflect(), 0)
	src.ProtoReflect().SetUnknown([]byte{0xf8, 0x07, 0x01}) // field 127, varint 1
	fields := src.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		require.True(t, src.ProtoReflect().Has(fields.Get(i)), "field %s is filled", fields.Get(i).Name())
	}
	want, err := rowOptions.Marshal(src)
	require.NoError(t, err)
	cp := copyOrganization(src)
	require.True(t, proto.Equal(src, cp))
	got, err := rowOptions.Marshal(cp)
	require.NoError(t, err)
	require.Equal(t, want, got)

	cp.Name, cp.ModifyIndex, cp.UpdateTime = "Renamed", 10, timestamppb.Now()
	again, err := rowOptions.Marshal(src)
	require.NoError(t, err)
	require.Equal(t, want, again, "the source is unchanged")

	var empty trustfedv1.Organization
	require.True(t, proto.Equal(&empty, copyOrganization(&empty)))
}

func BenchmarkCopyOrganization(b *testing.B) {
	src := &trustfedv1.Organization{}
	fillAll(src.ProtoReflect(), 0)
	b.Run("CloneOf", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = proto.CloneOf(src)
		}
	})
	b.Run("copyOrganization", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			_ = copyOrganization(src)
		}
	})
}
