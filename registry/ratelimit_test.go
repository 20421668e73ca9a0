package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time                { return c.now }
func (c *fakeClock) advance(d time.Duration)       { c.now = c.now.Add(d) }
func newFakeClock() *fakeClock                     { return &fakeClock{now: time.Unix(1_800_000_000, 0)} }
func limitedServer(l Limits, c *fakeClock) *Server { return &Server{limiter: newLimiter(l, c.Now)} }

// retryInfo returns the RetryInfo detail of a ResourceExhausted error.
func retryInfo(t *testing.T, err error) time.Duration {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), "%v", err)
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.RetryDelay.AsDuration()
		}
	}
	t.Fatalf("no RetryInfo in %v", err)
	return 0
}

func TestBucketsRefuseThenRefill(t *testing.T) {
	c := newFakeClock()
	b := newBuckets("writes", Limit{PerSecond: 10, Burst: 2})
	require.Zero(t, b.take("a", c.Now()))
	require.Zero(t, b.take("a", c.Now()))
	require.Equal(t, 100*time.Millisecond, b.take("a", c.Now()), "the burst is spent: one token in 1/10 s")
	require.Equal(t, 100*time.Millisecond, b.take("a", c.Now()), "a refused call takes nothing")
	require.Zero(t, b.take("b", c.Now()), "another principal has its own bucket")
	c.advance(100 * time.Millisecond)
	require.Zero(t, b.take("a", c.Now()))
}

// Full buckets are dropped when the table grows: memory follows the
// principals active in the last Burst/PerSecond, not all ever seen.
func TestBucketsForgetIdlePrincipals(t *testing.T) {
	c := newFakeClock()
	b := newBuckets("reads", Limit{PerSecond: 100, Burst: 10})
	for i := range bucketSweepMin {
		b.take(fmt.Sprint("p", i), c.Now())
	}
	require.Equal(t, bucketSweepMin, b.size())
	c.advance(5 * time.Millisecond) // half a token back: not full yet
	b.take("busy", c.Now())
	require.Equal(t, bucketSweepMin+1, b.size(), "buckets still refilling are kept")
	require.Equal(t, 2*bucketSweepMin, b.sweepAt, "the next sweep waits until the table doubled")
	c.advance(time.Second) // every bucket full again
	swept := false
	for i := 0; i < 2*bucketSweepMin && !swept; i++ {
		before := b.size()
		b.take(fmt.Sprint("q", i), c.Now())
		if b.size() < before {
			swept = true
			require.Equal(t, i+1, b.size(), "only the buckets taken from since are left")
		}
	}
	require.True(t, swept, "the table was swept when it doubled")
}

// Beyond the table's bound, new principals share one bucket.
func TestBucketsOverflowShareOneBucket(t *testing.T) {
	c := newFakeClock()
	b := newBuckets("checks", Limit{PerSecond: 1, Burst: 1})
	b.max = 3
	for _, p := range []string{"a", "b", "c"} {
		require.Zero(t, b.take(p, c.Now()))
	}
	require.Zero(t, b.take("d", c.Now()), "d gets the overflow bucket")
	require.Positive(t, b.take("e", c.Now()), "e shares it with d")
	require.Equal(t, 4, b.size())
}

func TestLimitBudgetsByKindAndPrincipal(t *testing.T) {
	c := newFakeClock()
	s := limitedServer(Limits{Checks: Limit{1, 1}, Writes: Limit{2, 1}, Reads: Limit{1, 1}}, c)
	ctx := context.Background()
	admin := Principal{ID: "token:t1", Role: RoleAdmin}
	check := trustfedv1.RegistryService_CheckInteraction_FullMethodName
	write := trustfedv1.AdminService_UpdateOrganization_FullMethodName
	read := trustfedv1.RegistryService_GetOrganization_FullMethodName

	require.NoError(t, s.limit(ctx, check, admin, nil))
	err := s.limit(ctx, check, admin, nil)
	require.Equal(t, time.Second, retryInfo(t, err))
	require.Contains(t, status.Convert(err).Message(), "at most 1 checks per second (burst 1)")

	// The other budgets are untouched.
	require.NoError(t, s.limit(ctx, write, admin, nil))
	err = s.limit(ctx, write, admin, nil)
	require.Equal(t, 500*time.Millisecond, retryInfo(t, err))
	require.Contains(t, status.Convert(err).Message(), "writes")
	require.NoError(t, s.limit(ctx, read, admin, nil))
	require.Contains(t, status.Convert(s.limit(ctx, read, admin, nil)).Message(), "reads")

	// Another principal has its own budget; registry servers have none.
	require.NoError(t, s.limit(ctx, check, Principal{ID: "token:t2", Role: RoleAdmin}, nil))
	node := Principal{ID: "node:n2", Role: RoleNode}
	for range 10 {
		require.NoError(t, s.limit(ctx, check, node, nil))
	}

	// Anonymous callers are counted per client address; behind the REST
	// gateway (loopback), per forwarded address.
	anon := Principal{ID: "anonymous", Role: RoleNone}
	from := func(addr, fwd string) context.Context {
		ctx := peer.NewContext(ctx, &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(addr), Port: 40000}})
		if fwd != "" {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-forwarded-for", fwd))
		}
		return ctx
	}
	require.NoError(t, s.limit(from("192.0.2.1", ""), read, anon, nil))
	retryInfo(t, s.limit(from("192.0.2.1", "198.51.100.7"), read, anon, nil)) // not loopback: the header is ignored
	require.NoError(t, s.limit(from("192.0.2.2", ""), read, anon, nil))
	require.NoError(t, s.limit(from("127.0.0.1", "198.51.100.7"), read, anon, nil))
	require.NoError(t, s.limit(from("127.0.0.1", "198.51.100.8"), read, anon, nil))
	retryInfo(t, s.limit(from("127.0.0.1", "198.51.100.8"), read, anon, nil))
	// What the REST client claims comes first; the gateway appends the
	// real address last.
	retryInfo(t, s.limit(from("127.0.0.1", "203.0.113.1, 198.51.100.8"), read, anon, nil))
	retryInfo(t, s.limit(from("127.0.0.1", "203.0.113.2,198.51.100.8"), read, anon, nil))

	c.advance(time.Second)
	require.NoError(t, s.limit(ctx, check, admin, nil), "refilled")
}

// A batch of checks spends one check per item, at most the burst (so a
// batch larger than the burst is not refused forever).
func TestBatchChecksSpendOnePerItem(t *testing.T) {
	c := newFakeClock()
	s := limitedServer(Limits{Checks: Limit{10, 10}}, c)
	ctx := context.Background()
	member := Principal{ID: "member:acme/gw", Role: RoleMember, Organization: "acme"}
	batch := trustfedv1.RegistryService_CheckInteractions_FullMethodName
	single := trustfedv1.RegistryService_CheckInteraction_FullMethodName
	items := func(n int) *trustfedv1.CheckInteractionsRequest {
		return &trustfedv1.CheckInteractionsRequest{Checks: make([]*trustfedv1.CheckInteractionRequest, n)}
	}

	require.NoError(t, s.limit(ctx, batch, member, items(4)))
	require.NoError(t, s.limit(ctx, batch, member, items(6)))
	err := s.limit(ctx, single, member, nil)
	require.Contains(t, status.Convert(err).Message(), "checks", "the batches spent the budget of single checks too")
	require.Equal(t, 100*time.Millisecond, retryInfo(t, err))

	c.advance(time.Second)
	require.NoError(t, s.limit(ctx, batch, member, items(300)), "a batch beyond the burst takes the whole burst")
	require.Equal(t, 100*time.Millisecond, retryInfo(t, s.limit(ctx, batch, member, items(1))))
}

func TestZeroLimitsLimitNothing(t *testing.T) {
	s := limitedServer(Limits{}, newFakeClock())
	for range 100 {
		require.NoError(t, s.limit(context.Background(), trustfedv1.RegistryService_CheckInteraction_FullMethodName, Principal{ID: "token:t", Role: RoleAdmin}, nil))
	}
	release, err := s.watchSlot("acme")
	require.NoError(t, err)
	release()
	require.NoError(t, (&Server{}).limit(context.Background(), "/x", Principal{}, nil), "a server without a limiter")
}

func TestLimitsValidate(t *testing.T) {
	require.NoError(t, DefaultLimits().Validate())
	require.NoError(t, Limits{}.Validate())
	err := Limits{Checks: Limit{PerSecond: -1}, Writes: Limit{PerSecond: 5}, WatchStreamsPerOrg: -2}.Validate()
	require.ErrorContains(t, err, "Limits.Checks.PerSecond")
	require.ErrorContains(t, err, "Limits.Writes.Burst")
	require.ErrorContains(t, err, "Limits.WatchStreamsPerOrg")
}

func TestWatchSlotsCapStreamsPerOrganization(t *testing.T) {
	s := limitedServer(Limits{WatchStreamsPerOrg: 2}, newFakeClock())
	r1, err := s.watchSlot("acme")
	require.NoError(t, err)
	r2, err := s.watchSlot("acme")
	require.NoError(t, err)
	_, err = s.watchSlot("acme")
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), `"acme" already has 2 WatchEvents streams open`)
	rOther, err := s.watchSlot("globex")
	require.NoError(t, err, "another organisation has its own slots")
	r1()
	r1() // releasing twice gives back one slot only
	r3, err := s.watchSlot("acme")
	require.NoError(t, err)
	_, err = s.watchSlot("acme")
	require.Equal(t, codes.ResourceExhausted, status.Code(err))
	r2()
	r3()
	rOther()
	require.Empty(t, s.limiter.watch.open)
}

// REST: ResourceExhausted becomes 429 with a Retry-After header.
func TestGatewayErrorHandlerRetryAfter(t *testing.T) {
	mux := runtime.NewServeMux()
	c := newFakeClock()
	s := limitedServer(Limits{Writes: Limit{PerSecond: 0.5, Burst: 1}}, c)
	p := Principal{ID: "token:t", Role: RoleAdmin}
	write := trustfedv1.AdminService_UpdateOrganization_FullMethodName
	require.NoError(t, s.limit(context.Background(), write, p, nil))
	err := s.limit(context.Background(), write, p, nil)
	require.Equal(t, 2*time.Second, retryInfo(t, err))

	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/x", nil)
	gatewayErrorHandler(r.Context(), mux, &runtime.JSONPb{}, w, r, err)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.Equal(t, "2", w.Header().Get("Retry-After"))
	require.Contains(t, w.Body.String(), "rate limit exceeded")

	w = httptest.NewRecorder()
	gatewayErrorHandler(r.Context(), mux, &runtime.JSONPb{}, w, r, status.Error(codes.NotFound, "nope"))
	require.Equal(t, http.StatusNotFound, w.Code)
	require.Empty(t, w.Header().Get("Retry-After"))
}
