package registry

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Sentinel errors of the service layer.
var (
	ErrUnauthenticated  = errors.New("missing or invalid credentials")
	ErrPermissionDenied = errors.New("permission denied")
)

var kindCodes = map[state.ErrorKind]codes.Code{
	state.KindInvalidArgument:    codes.InvalidArgument,
	state.KindNotFound:           codes.NotFound,
	state.KindAlreadyExists:      codes.AlreadyExists,
	state.KindFailedPrecondition: codes.FailedPrecondition,
	state.KindPermissionDenied:   codes.PermissionDenied,
}

// toStatus turns any error a handler returns into a gRPC status. It is the
// only place where errors are mapped to codes.
func toStatus(logger *slog.Logger, method string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var se *state.Error
	switch {
	case errors.As(err, &se):
		code, ok := kindCodes[se.Kind]
		if !ok {
			code = codes.Internal
		}
		st := status.New(code, se.Error())
		if se.Field != "" {
			if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: se.Field, Description: se.Msg}}}); derr == nil {
				st = d
			}
		}
		return st.Err()
	case errors.Is(err, ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, err.Error())
	case errors.Is(err, ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, ErrTooStale):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, consensus.ErrCatchingUp):
		return retryable("this node is catching up with the leader's log and cannot answer yet: retry shortly or ask another node (" + err.Error() + ")")
	case errors.Is(err, consensus.ErrLeaderChanged), errors.Is(err, consensus.ErrLeaderUnreachable):
		return retryable("the leader changed or did not answer: retry shortly (" + err.Error() + ")")
	case errors.Is(err, consensus.ErrUnsafeChange):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, consensus.ErrUnknownOutcome):
		return status.Error(codes.Unavailable, "outcome unknown (leadership changed or timed out): retry with the same request_id; it will not be applied twice")
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrNotReady):
		return status.Error(codes.Unavailable, "no ready leader right now: retry shortly ("+err.Error()+")")
	case errors.Is(err, consensus.ErrClosed):
		return status.Error(codes.Unavailable, "server is shutting down")
	case errors.Is(err, consensus.ErrStorage):
		return retryable("this node cannot write its raft log (" + err.Error() + "): ask another node")
	case errors.Is(err, state.ErrCorruptCommand):
		logger.Error("corrupt command", "method", method, "error", err)
		return status.Error(codes.Internal, "internal error: corrupt command")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	default:
		logger.Error("internal error", "method", method, "error", err)
		return status.Error(codes.Internal, "internal error")
	}
}

// retryAfterUnavailable is the retry delay an UNAVAILABLE answer suggests
// (REST: Retry-After).
const retryAfterUnavailable = time.Second

// retryable is an UNAVAILABLE status with a RetryInfo detail.
func retryable(msg string) error {
	st := status.New(codes.Unavailable, msg)
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retryAfterUnavailable)}); err == nil {
		st = d
	}
	return st.Err()
}
