package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// requestIDField is the idempotency-key field of write requests.
const requestIDField protoreflect.Name = "request_id"

// NewRequestID returns a random idempotency key: 16 random bytes in hex.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// EnsureRequestID sets msg's string request_id field to NewRequestID() if
// the message has such a field and it is empty, and returns the field's
// value ("" for messages without one).
func EnsureRequestID(msg proto.Message) string {
	if msg == nil {
		return ""
	}
	m := msg.ProtoReflect()
	if !m.IsValid() {
		return ""
	}
	fd := m.Descriptor().Fields().ByName(requestIDField)
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.Cardinality() == protoreflect.Repeated {
		return ""
	}
	if id := m.Get(fd).String(); id != "" {
		return id
	}
	id := NewRequestID()
	m.Set(fd, protoreflect.ValueOfString(id))
	return id
}

// requestIDInterceptor fills in request_id on every write request.
func requestIDInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if msg, ok := req.(proto.Message); ok {
		EnsureRequestID(msg)
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// timeoutInterceptor bounds calls whose context has no deadline.
func timeoutInterceptor(timeout time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if timeout > 0 {
			if _, ok := ctx.Deadline(); !ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
