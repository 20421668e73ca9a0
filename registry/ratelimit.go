package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limit is a token bucket: PerSecond calls per second on average and up to
// Burst at once. PerSecond 0 means unlimited.
type Limit struct {
	PerSecond float64
	Burst     int
}

// Limits are the budgets of one node, per principal (registry servers are
// never limited; anonymous callers of public methods are counted per client
// address). Each node counts on its own: a principal spreading its calls
// over n nodes gets up to n times the budget.
type Limits struct {
	// Checks budgets CheckInteraction, and CheckInteractions by its items.
	Checks Limit
	// Writes budgets every method that changes state (writeMethods).
	Writes Limit
	// Reads budgets everything else, including opening a stream.
	Reads Limit
	// WatchStreamsPerOrg caps the WatchEvents streams open at once for one
	// organisation on this node; 0 means unlimited.
	WatchStreamsPerOrg int
}

// DefaultLimits are generous budgets: they stop a runaway or hostile
// client, not a busy member (a check costs the server ~25 µs of CPU).
func DefaultLimits() Limits {
	return Limits{
		Checks:             Limit{PerSecond: 5000, Burst: 10000},
		Writes:             Limit{PerSecond: 50, Burst: 200},
		Reads:              Limit{PerSecond: 500, Burst: 1000},
		WatchStreamsPerOrg: 8,
	}
}

// Validate checks every limit; errors name the field.
func (l Limits) Validate() error {
	var errs []error
	for _, x := range []struct {
		name string
		l    Limit
	}{{"Checks", l.Checks}, {"Writes", l.Writes}, {"Reads", l.Reads}} {
		switch {
		case x.l.PerSecond < 0 || math.IsNaN(x.l.PerSecond) || math.IsInf(x.l.PerSecond, 0):
			errs = append(errs, fmt.Errorf("Limits.%s.PerSecond must be a finite number >= 0 (0 = unlimited), got %v", x.name, x.l.PerSecond))
		case x.l.PerSecond > 0 && x.l.Burst < 1:
			errs = append(errs, fmt.Errorf("Limits.%s.Burst must be at least 1 when PerSecond is set, got %d", x.name, x.l.Burst))
		}
	}
	if l.WatchStreamsPerOrg < 0 {
		errs = append(errs, fmt.Errorf("Limits.WatchStreamsPerOrg must be >= 0 (0 = unlimited), got %d", l.WatchStreamsPerOrg))
	}
	return errors.Join(errs...)
}

const (
	// bucketSweepMin is the size of a bucket table below which it is never
	// swept; above, it is swept each time it doubles.
	bucketSweepMin = 1024
	// maxBuckets bounds a table: beyond it (after a sweep), principals
	// without a bucket share one overflow bucket.
	maxBuckets = 100_000
	// overflowKey names the shared bucket.
	overflowKey = "\x00overflow"
)

// buckets is one budget's token buckets, by principal. A bucket that is
// full again is indistinguishable from a new one, so sweeping drops those
// and memory stays proportional to the principals active in the last
// Burst/PerSecond seconds.
type buckets struct {
	name  string // "checks", "writes", "reads"
	limit Limit
	max   int // maxBuckets (tests lower it)

	mu      sync.Mutex
	m       map[string]*rate.Limiter
	sweepAt int
}

func newBuckets(name string, l Limit) *buckets {
	return &buckets{name: name, limit: l, max: maxBuckets, m: map[string]*rate.Limiter{}, sweepAt: bucketSweepMin}
}

// take takes one token from key's bucket at now; when there is none it
// returns how long until there will be one.
func (b *buckets) take(key string, now time.Time) time.Duration { return b.takeN(key, now, 1) }

// takeN is take for n calls at once (the items of a batch).
func (b *buckets) takeN(key string, now time.Time, n int) time.Duration {
	lim := b.bucket(key, now)
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return time.Second // not reached: Burst >= 1
	}
	d := r.DelayFrom(now)
	if d > 0 {
		r.CancelAt(now)
	}
	return d
}

func (b *buckets) bucket(key string, now time.Time) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lim, ok := b.m[key]; ok {
		return lim
	}
	if len(b.m) >= b.sweepAt {
		b.sweep(now)
	}
	if len(b.m) >= b.max {
		key = overflowKey
		if lim, ok := b.m[key]; ok {
			return lim
		}
	}
	lim := rate.NewLimiter(rate.Limit(b.limit.PerSecond), b.limit.Burst)
	b.m[key] = lim
	return lim
}

// sweep drops full buckets; b.mu is held.
func (b *buckets) sweep(now time.Time) {
	for k, lim := range b.m {
		if lim.TokensAt(now) >= float64(b.limit.Burst) {
			delete(b.m, k)
		}
	}
	b.sweepAt = max(bucketSweepMin, 2*len(b.m))
}

func (b *buckets) size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// limiter holds a node's rate-limit state.
type limiter struct {
	checks, writes, reads *buckets // nil = unlimited
	watch                 *streamSlots
	refusals              *refusals // transport refusals audited (tls_audit.go)
	clock                 func() time.Time
}

func newLimiter(l Limits, clock func() time.Time) *limiter {
	mk := func(name string, x Limit) *buckets {
		if x.PerSecond <= 0 {
			return nil
		}
		return newBuckets(name, x)
	}
	return &limiter{
		checks:   mk("checks", l.Checks),
		writes:   mk("writes", l.Writes),
		reads:    mk("reads", l.Reads),
		watch:    &streamSlots{max: l.WatchStreamsPerOrg, open: map[string]int{}},
		refusals: newRefusals(),
		clock:    clock,
	}
}

func (l *limiter) budget(method string) *buckets {
	switch {
	case method == trustfedv1.RegistryService_CheckInteraction_FullMethodName,
		method == trustfedv1.RegistryService_CheckInteractions_FullMethodName:
		return l.checks
	case writeMethods[method]:
		return l.writes
	default:
		return l.reads
	}
}

// limit applies the per-principal rate limits to a call of method by p:
// ResourceExhausted, naming the limit and carrying a google.rpc.RetryInfo,
// when p's budget for that kind of call is spent. Registry servers (RoleNode)
// are not limited.
func (s *Server) limit(ctx context.Context, method string, p Principal, req any) error {
	if s.limiter == nil || p.Role == RoleNode {
		return nil
	}
	b := s.limiter.budget(method)
	if b == nil {
		return nil
	}
	key := p.ID
	if p.Role == RoleNone {
		key = "anonymous@" + clientHost(ctx)
	}
	n := 1
	if batch, ok := req.(*trustfedv1.CheckInteractionsRequest); ok {
		n = max(1, min(len(batch.GetChecks()), b.limit.Burst))
	}
	d := b.takeN(key, s.limiter.clock(), n)
	if d <= 0 {
		return nil
	}
	return rateLimited(b, d)
}

// rateLimited is the ResourceExhausted status of an exceeded budget.
func rateLimited(b *buckets, retry time.Duration) error {
	retry = max(time.Millisecond, retry.Round(time.Millisecond))
	st := status.New(codes.ResourceExhausted, fmt.Sprintf(
		"rate limit exceeded: at most %g %s per second (burst %d) per caller on this node; retry in %s",
		b.limit.PerSecond, b.name, b.limit.Burst, retry))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(retry)}); err == nil {
		st = d
	}
	return st.Err()
}

// clientHost is the host an anonymous call came from: the TCP peer, or, for
// calls the REST gateway makes over loopback, the address it forwards — the
// last one of X-Forwarded-For, the one the gateway appended itself (the
// ones before it are whatever the REST client claimed).
func clientHost(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok || pr.Addr == nil {
		return "unknown"
	}
	host, _, err := net.SplitHostPort(pr.Addr.String())
	if err != nil {
		host = pr.Addr.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if fwd := md.Get("x-forwarded-for"); len(fwd) > 0 {
				last := fwd[len(fwd)-1]
				if i := strings.LastIndexByte(last, ','); i >= 0 {
					last = last[i+1:]
				}
				if last = strings.TrimSpace(last); last != "" {
					return "fwd:" + last
				}
			}
		}
	}
	return host
}

// streamSlots counts open streams per organisation.
type streamSlots struct {
	max  int // 0 = unlimited
	mu   sync.Mutex
	open map[string]int
}

// acquire takes one of org's stream slots; release gives it back.
func (s *streamSlots) acquire(org string) (release func(), err error) {
	if s == nil || s.max <= 0 {
		return func() {}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open[org] >= s.max {
		return nil, status.Errorf(codes.ResourceExhausted,
			"organization_id: %q already has %d WatchEvents streams open on this node, the most allowed (-watch-streams-per-org): close one first",
			org, s.max)
	}
	s.open[org]++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.open[org]--; s.open[org] <= 0 {
				delete(s.open, org)
			}
		})
	}, nil
}

// watchSlot takes one of org's WatchEvents stream slots on this node.
func (s *Server) watchSlot(org string) (release func(), err error) {
	if s.limiter == nil {
		return func() {}, nil
	}
	return s.limiter.watch.acquire(org)
}

// gatewayErrorHandler is the REST gateway's error handler: grpc-gateway's
// own (ResourceExhausted becomes 429 Too Many Requests), plus a Retry-After
// header (whole seconds, rounded up) when the status carries a RetryInfo.
func gatewayErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	if st, ok := status.FromError(err); ok {
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
				secs := int64(math.Ceil(ri.GetRetryDelay().AsDuration().Seconds()))
				w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
				break
			}
		}
	}
	w, err = restUnauthenticated(w, r, err)
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// restCallTimeout bounds the gRPC call the gateway makes for a REST request
// that names no shorter Grpc-Timeout; it matches the REST server's write
// timeout, past which the answer could not be written anyway.
const restCallTimeout = 60 * time.Second

// withCallDeadline gives every request's context a deadline: net/http does
// not cancel a request's context when its write timeout passes, so without
// one a call to a stuck backend would live as long as the client waits.
func withCallDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
