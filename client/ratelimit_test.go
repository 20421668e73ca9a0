package client

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// limitedServer serves gRPC health checks, refusing the first refusals
// calls with refusal; it counts the calls it saw.
func limitedServer(t *testing.T, refusals int64, refusal error) (*Client, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if calls.Add(1) <= refusals {
			return nil, refusal
		}
		return h(ctx, req)
	}))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	c, err := New(context.Background(), Config{Addr: ln.Addr().String(), Insecure: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c, &calls
}

func rateLimited(t *testing.T, after time.Duration) error {
	st, err := status.New(codes.ResourceExhausted, "rate limit exceeded").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)})
	require.NoError(t, err)
	return st.Err()
}

func TestCallsWaitOutTheRateLimit(t *testing.T) {
	c, calls := limitedServer(t, 2, rateLimited(t, 20*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := healthpb.NewHealthClient(c.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 3, calls.Load(), "two refusals, then the call went through")
	require.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond, "it waited the delays the server named")
	d, ok := RetryDelay(rateLimited(t, time.Second))
	require.True(t, ok)
	require.Equal(t, time.Second, d)
}

func TestOtherExhaustionIsNotRetried(t *testing.T) {
	c, calls := limitedServer(t, 1, status.Error(codes.ResourceExhausted, "stream cap"))
	_, err := healthpb.NewHealthClient(c.Conn()).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.EqualValues(t, 1, calls.Load())
	_, ok := RetryDelay(err)
	require.False(t, ok)
}

func TestRateLimitRetryRespectsTheDeadline(t *testing.T) {
	c, calls := limitedServer(t, 100, rateLimited(t, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(c.Conn()).Check(ctx, &healthpb.HealthCheckRequest{})
	require.Equal(t, codes.ResourceExhausted, status.Code(err), "the deadline cannot wait a minute: returned at once")
	require.EqualValues(t, 1, calls.Load())
}
