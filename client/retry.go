package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Retry schedule of RetryUnknown.
var (
	retryAttempts   = 5
	retryBaseDelay  = 100 * time.Millisecond
	retryMaxBackoff = 2 * time.Second
)

// IsUnknownOutcome reports whether err leaves it unknown whether a write was
// applied: the connection failed (Unavailable), the call timed out
// (DeadlineExceeded) or the server gave up mid-way (Aborted). Such a write
// may be retried with the same request_id.
func IsUnknownOutcome(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		return true
	}
	return false
}

// RetryUnknown calls fn until it succeeds, fails with an error that is not
// an unknown outcome (see IsUnknownOutcome), ctx ends, or 5 attempts have
// been made, backing off exponentially with jitter between attempts. It
// returns fn's last error.
//
// fn must resend the same request message each time, so that the
// request_id set on the first attempt makes the retries idempotent:
//
//	req := &trustfedv1.ApproveOrganizationRequest{OrganizationId: "acme"}
//	err := client.RetryUnknown(ctx, func(ctx context.Context) error {
//		_, err := c.Admin().ApproveOrganization(ctx, req)
//		return err
//	})
func RetryUnknown(ctx context.Context, fn func(context.Context) error) error {
	delay := retryBaseDelay
	var err error
	for attempt := 1; ; attempt++ {
		err = fn(ctx)
		if err == nil || !IsUnknownOutcome(err) || attempt >= retryAttempts || ctx.Err() != nil {
			return err
		}
		// Full jitter in [delay/2, delay).
		wait := delay/2 + rand.N(delay/2+1)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-timer.C:
		}
		delay = min(2*delay, retryMaxBackoff)
	}
}
