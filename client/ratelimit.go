package client

import (
	"context"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxRateLimitRetries bounds how often one call is retried after the
// registry's rate limit refused it.
const maxRateLimitRetries = 8

// RetryDelay returns the delay a ResourceExhausted error asks the caller to
// wait before retrying (its google.rpc.RetryInfo), and false when err
// carries none: the registry attaches one to rate-limit refusals only.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// rateLimitInterceptor honours the registry's rate limits: a unary call
// refused with ResourceExhausted and a RetryInfo (refused before anything
// ran, so always safe to resend) is resent after the delay it names, up to
// maxRateLimitRetries times, as long as the call's deadline leaves room.
// Other errors, and refusals the deadline cannot wait for, are returned.
func rateLimitInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	for attempt := 0; ; attempt++ {
		err := invoker(ctx, method, req, reply, cc, opts...)
		wait, ok := RetryDelay(err)
		if !ok || attempt >= maxRateLimitRetries {
			return err
		}
		if dl, has := ctx.Deadline(); has && time.Until(dl) < wait {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
