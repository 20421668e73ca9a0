package system_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// requireFieldViolation asserts err is code with a BadRequest detail naming
// field.
func requireFieldViolation(t *testing.T, err error, code codes.Code, field string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), "%v", err)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
	}
	require.Contains(t, fields, field, "%v", err)
}

// A batch of checks answers each item as CheckInteraction does — its own
// decision, audit entry and quorum certificate, verifiable alone — with
// the items sharing audit batches; it is validated and authorised item by
// item, as a whole, before anything is decided.
func TestCheckInteractionsBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	p := startPair(t, "bank-a", 4, "bank-b", 2, []string{"task_send", "ping"})
	enrol(t, p.admin, p.fed, "bank-c", 3) // no agreement with bank-a
	keys, err := p.member.Keys(ctxT(t))
	require.NoError(t, err)

	const n = 16
	var checks []*trustfedv1.CheckInteractionRequest
	for i := range n {
		to := "bank-b"
		if i%4 == 3 {
			to = "bank-c"
		}
		// Every other item leaves from_organization_id empty: the member's own.
		from := "bank-a"
		if i%2 == 1 {
			from = ""
		}
		checks = append(checks, &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: to, Action: "task_send", Value: int64(i)})
	}
	resp, err := p.member.Registry().CheckInteractions(ctxT(t), &trustfedv1.CheckInteractionsRequest{Checks: checks})
	require.NoError(t, err)
	require.Len(t, resp.Results, n)
	single, err := p.member.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "task_send"})
	require.NoError(t, err)

	seqs, heads := map[uint64]bool{}, map[string]bool{}
	for i, r := range resp.Results {
		want := trustfedv1.Decision_DECISION_ALLOW
		if i%4 == 3 {
			want = trustfedv1.Decision_DECISION_DENY
		}
		require.Equal(t, want, r.Decision, "item %d: %v", i, r.Reasons)
		require.Equal(t, single.Certification, r.Certification, "item %d is certified like a single check", i)
		require.NotNil(t, r.Certificate, "item %d carries its quorum certificate", i)
		st, err := client.VerifyDecision(r, keys, r.DecidedAt.AsTime())
		require.NoError(t, err, "item %d verifies on its own", i)
		require.Equal(t, "bank-a", st.FromOrganizationId, "item %d", i)
		require.Equal(t, checks[i].ToOrganizationId, st.ToOrganizationId, "item %d answers its own check", i)
		require.Equal(t, int64(i), st.Value, "item %d answers its own check", i)
		require.NotZero(t, r.AuditSequence, "item %d is audited", i)
		require.False(t, seqs[r.AuditSequence], "item %d has its own audit entry", i)
		seqs[r.AuditSequence] = true
		heads[string(r.Certificate.BatchHead)] = true
	}
	// The batcher sends the first event at once and the rest together.
	require.LessOrEqual(t, len(heads), n/2, "the items share audit batches")

	// Validation names the item, and nothing is decided.
	bad := []*trustfedv1.CheckInteractionRequest{checks[0], {FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "fly"}}
	_, err = p.member.Registry().CheckInteractions(ctxT(t), &trustfedv1.CheckInteractionsRequest{Checks: bad})
	requireFieldViolation(t, err, codes.InvalidArgument, "checks[1].action")
	_, err = p.member.Registry().CheckInteractions(ctxT(t), &trustfedv1.CheckInteractionsRequest{})
	requireFieldViolation(t, err, codes.InvalidArgument, "checks")
	tooMany := make([]*trustfedv1.CheckInteractionRequest, 257)
	for i := range tooMany {
		tooMany[i] = checks[0]
	}
	_, err = p.member.Registry().CheckInteractions(ctxT(t), &trustfedv1.CheckInteractionsRequest{Checks: tooMany})
	requireFieldViolation(t, err, codes.InvalidArgument, "checks")
	after, err := p.member.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{ToOrganizationId: "bank-b", Action: "task_send"})
	require.NoError(t, err)
	require.Equal(t, single.AuditSequence+1, after.AuditSequence, "invalid batches audited no decision")

	// Every item acts for the member's own organisation.
	other := []*trustfedv1.CheckInteractionRequest{checks[0], {FromOrganizationId: "bank-b", ToOrganizationId: "bank-a", Action: "ping"}}
	_, err = p.member.Registry().CheckInteractions(ctxT(t), &trustfedv1.CheckInteractionsRequest{Checks: other})
	requireFieldViolation(t, err, codes.PermissionDenied, "checks[1].from_organization_id")
	_, err = p.admin.Registry().CheckInteractions(ctxT(t), &trustfedv1.CheckInteractionsRequest{Checks: checks[:1]})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "member nodes only: %v", err)
}

// BenchmarkCheckInteractionsBatch compares n single checks sent at once
// (n goroutines, one connection) with one CheckInteractions call of n
// items, on a dev server: ns/op is per n decisions either way; checks/s,
// and the server's CPU per check (its process CPU time over the run), the
// steadier figure on a shared machine.
func BenchmarkCheckInteractionsBatch(b *testing.B) {
	p := startPair(b, "bench-a", 4, "bench-b", 3, []string{"task_send"}, noRateLimits...)
	member := p.member
	for _, n := range []int{16, 64, 256} {
		checks := make([]*trustfedv1.CheckInteractionRequest, n)
		for i := range checks {
			checks[i] = &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
		}
		measure := func(b *testing.B, round func() error) {
			cpu0, err := p.d.srv.CPUTime()
			require.NoError(b, err)
			for b.Loop() {
				if err := round(); err != nil {
					b.Fatal(err)
				}
			}
			cpu1, err := p.d.srv.CPUTime()
			require.NoError(b, err)
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "checks/s")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(n*b.N), "server-µs/check")
		}
		b.Run(fmt.Sprintf("singles/n=%d", n), func(b *testing.B) {
			measure(b, func() error {
				var g errgroup.Group
				for _, c := range checks {
					g.Go(func() error {
						_, err := member.Registry().CheckInteraction(context.Background(), c)
						return err
					})
				}
				return g.Wait()
			})
		})
		b.Run(fmt.Sprintf("batch/n=%d", n), func(b *testing.B) {
			req := &trustfedv1.CheckInteractionsRequest{Checks: checks}
			measure(b, func() error {
				_, err := member.Registry().CheckInteractions(context.Background(), req)
				return err
			})
		})
	}
}
