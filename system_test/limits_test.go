package system_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// noRateLimits turns the per-principal rate limits off: benchmarks measure
// the server's capacity from one principal, not the limiter.
var noRateLimits = []string{"-rate-checks", "0", "-rate-writes", "0", "-rate-reads", "0"}

// A caller over its read budget gets ResourceExhausted naming the limit,
// with a RetryInfo saying when to retry; over REST, 429 with Retry-After.
// Other budgets are separate, and the SDK waits the delay out by itself.
func TestRateLimitsOverARealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	d := startDev(t, "-rate-reads", "1", "-rate-reads-burst", "5")
	// A bare gRPC connection: the SDK would wait the limit out.
	conn, err := grpc.NewClient(d.srv.Addrs.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: caPool(t, d.caFile), MinVersion: tls.VersionTLS13})))
	require.NoError(t, err)
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+d.token)
	registry := trustfedv1.NewRegistryServiceClient(conn)

	var exhausted error
	for i := 0; i < 20 && exhausted == nil; i++ {
		_, err := registry.ListOrganizations(ctx, &trustfedv1.ListOrganizationsRequest{})
		if status.Code(err) == codes.ResourceExhausted {
			exhausted = err
		} else {
			require.NoError(t, err)
		}
	}
	require.Error(t, exhausted, "the read budget (burst 5) was never exhausted")
	st := status.Convert(exhausted)
	require.Contains(t, st.Message(), "at most 1 reads per second (burst 5)")
	var retry time.Duration
	for _, det := range st.Details() {
		if ri, ok := det.(*errdetails.RetryInfo); ok {
			retry = ri.RetryDelay.AsDuration()
		}
	}
	require.Positive(t, retry, "RetryInfo in %v", st.Details())
	require.LessOrEqual(t, retry, time.Second, "one token comes back in 1 s")

	// The same principal over REST: 429 and Retry-After in whole seconds.
	req, err := http.NewRequest(http.MethodGet, d.base+"/v1/organizations", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.http.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	secs, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", resp.Header.Get("Retry-After"))
	require.True(t, secs >= 1 && secs <= 2, "Retry-After %d", secs)

	// Writes have their own budget: a write is still handled (and refused
	// for what it says, not for the rate).
	_, err = trustfedv1.NewAdminServiceClient(conn).ProposeAdminChange(ctx, &trustfedv1.ProposeAdminChangeRequest{})
	require.NotEqual(t, codes.ResourceExhausted, status.Code(err), "%v", err)

	// The SDK waits out the delay the server names and succeeds.
	c := dial(t, d.srv, d.caFile, d.token)
	_, err = c.Registry().ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{})
	require.NoError(t, err)
}

// The WatchEvents streams of one organisation are capped per node: the
// stream beyond the cap is refused with ResourceExhausted naming it, and a
// slot comes back when a stream ends.
func TestWatchStreamsPerOrganizationAreCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	_, c, fed := startFederation(t, "-watch-streams-per-org", "2")
	enrol(t, c, fed, "acme-bank", 2)
	enrol(t, c, fed, "st-mary", 2)

	type stream struct {
		cancel context.CancelFunc
		done   chan error
	}
	open := func(org string) stream {
		ctx, cancel := context.WithCancel(context.Background())
		s := stream{cancel: cancel, done: make(chan error, 1)}
		ws, err := c.Cascades().WatchEvents(ctx, &trustfedv1.WatchEventsRequest{OrganizationId: org})
		if err != nil {
			s.done <- err
			return s
		}
		if _, err := ws.Header(); err != nil { // the server admitted the stream
			s.done <- err
			return s
		}
		go func() {
			_, err := ws.Recv() // no event comes: returns when the stream ends
			s.done <- err
		}()
		return s
	}
	// watchOnce opens one more stream of org for a second and returns how it
	// ended: ResourceExhausted (refused for the cap) or DeadlineExceeded
	// (served, waiting for events).
	watchOnce := func(org string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		ws, err := c.Cascades().WatchEvents(ctx, &trustfedv1.WatchEventsRequest{OrganizationId: org})
		if err == nil {
			_, err = ws.Recv()
		}
		return err
	}

	s1, s2 := open("acme-bank"), open("acme-bank")
	defer s2.cancel()
	refused := watchOnce("acme-bank")
	require.Equal(t, codes.ResourceExhausted, status.Code(refused), "the third stream: %v", refused)
	require.Contains(t, status.Convert(refused).Message(), `"acme-bank" already has 2 WatchEvents streams open on this node`)
	for _, s := range []stream{s1, s2} {
		select {
		case err := <-s.done:
			t.Fatalf("an admitted stream ended: %v", err)
		default:
		}
	}
	// Another organisation has its own slots.
	require.Equal(t, codes.DeadlineExceeded, status.Code(watchOnce("st-mary")), "st-mary's stream was not served")

	// When a stream ends its slot comes back.
	s1.cancel()
	<-s1.done
	testutil.Eventually(t, 30*time.Second, "a new acme-bank stream is served", func() error {
		if err := watchOnce("acme-bank"); status.Code(err) != codes.DeadlineExceeded {
			return fmt.Errorf("not served: %v", err)
		}
		return nil
	})
}
