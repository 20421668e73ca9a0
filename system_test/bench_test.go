package system_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// BenchmarkCheckInteraction measures CheckInteraction against a dev server
// process over gRPC/TLS on loopback, from parallel clients sharing one
// connection (as a member gateway does).
func BenchmarkCheckInteraction(b *testing.B) {
	member := benchMember(b)

	for _, mode := range []trustfedv1.Consistency{trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE, trustfedv1.Consistency_CONSISTENCY_STALE} {
		b.Run(mode.String(), func(b *testing.B) {
			req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send", Consistency: mode}
			runChecks(b, member, req, 16)
		})
	}
}

// BenchmarkUpdateOrganization measures the write path: validate, propose,
// commit (fsync) and apply on a single node, from parallel clients.
func BenchmarkUpdateOrganization(b *testing.B) {
	_, c, fed := startFederation(b, noRateLimits...)
	for i := 0; i < 16; i++ {
		enrol(b, c, fed, fmt.Sprintf("org-%d", i), 4)
	}
	b.SetParallelism(16)
	b.ResetTimer()
	var n int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := nextID(&n)
			_, err := c.Admin().UpdateOrganization(context.Background(), &trustfedv1.UpdateOrganizationRequest{OrganizationId: fmt.Sprintf("org-%d", i%16), Name: fmt.Sprintf("Org %d", i)})
			if err != nil {
				b.Errorf("update: %v", err)
				return
			}
		}
	})
}

// BenchmarkClusterCheckInteraction measures linearizable checks on a
// three-node cluster (processes on one machine), answered by the leader and
// by a follower (read index from the leader, then local state).
func BenchmarkClusterCheckInteraction(b *testing.B) {
	c := startCluster(b, noRateLimits...)
	leader := c.leader(b, "n1", "n2", "n3")
	follower := "n1"
	if leader == "n1" {
		follower = "n2"
	}
	accredit(b, c.clients[leader], c.fed, c.admins)
	enrol(b, c.clients[leader], c.fed, "bench-a", 4)
	enrol(b, c.clients[leader], c.fed, "bench-b", 3)
	agree(b, c.clients[leader], c.fed, "bench-a", "bench-b", "task_send")
	members := c.memberClients(b, c.clients[leader], "bench-a")
	for _, role := range []struct{ name, node string }{{"leader", leader}, {"follower", follower}} {
		b.Run(role.name, func(b *testing.B) {
			cl := members[role.node]
			req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := cl.Registry().CheckInteraction(context.Background(), req); err != nil {
						b.Errorf("check: %v", err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCascadeEndToEnd measures a revocation cascade through the whole
// system: an organisation with 1,000 partners, each a signed-webhook
// receiver on loopback (one HTTPS server hosting every endpoint), is
// revoked on a dev server; the time is from the commit of the revocation
// to the record of the last acknowledgement committed through Raft. Run it
// once: go test -run '^$' -bench CascadeEndToEnd -benchtime 1x ./system_test/
// (TRUSTFED_BENCH_PARTNERS=10000 for ten times as many; setting them up
// takes most of the run).
func BenchmarkCascadeEndToEnd(b *testing.B) {
	partners := 1000
	if v := os.Getenv("TRUSTFED_BENCH_PARTNERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("TRUSTFED_BENCH_PARTNERS=%q: want a positive number", v)
		}
		partners = n
	}
	b.ReportMetric(float64(partners), "partners")
	b.StopTimer()
	rc := newReceivers(b)
	d := startDev(b, slices.Concat(noRateLimits, []string{"-webhook-ca", rc.caFile(b)})...)
	c := dial(b, d.srv, d.caFile, d.token)
	waitServing(b, c)
	keys, err := c.Keys(ctxT(b))
	if err != nil {
		b.Fatal(err)
	}
	rc.set(func(rc *receivers) { rc.keys = webhookKey(b, keys) })
	fed := testutil.NewFederation(b)
	accredit(b, c, fed, d.admins)
	for i := 0; i < b.N; i++ {
		hub := fmt.Sprintf("hub-%d", i)
		enrol(b, c, fed, hub, 3)
		for p := range partners {
			org := fmt.Sprintf("p%d-%04d", i, p)
			enrol(b, c, fed, org, 3, func(r *trustfedv1.Registration) { r.NotificationEndpoints = []string{rc.endpoint(org)} })
			agree(b, c, fed, hub, org, "ping")
		}
		cpu0, err := d.srv.CPUTime()
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		d.admins.apply(b, testutil.SetStatus(hub, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED), c)
		cas := cascadeOf(b, c, hub)
		cas = waitCascade(b, c, cas.Id, "every partner acked", complete)
		b.StopTimer()
		cpu1, _ := d.srv.CPUTime()
		lat := make([]time.Duration, 0, len(cas.Deliveries))
		for _, del := range cas.Deliveries {
			lat = append(lat, del.AckTime.AsTime().Sub(cas.StartTime.AsTime()))
		}
		slices.Sort(lat)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		b.ReportMetric(ms(cas.CompleteTime.AsTime().Sub(cas.StartTime.AsTime())), "ms-to-complete")
		b.ReportMetric(ms(lat[len(lat)/2]), "ms-ack-p50")
		b.ReportMetric(ms(lat[len(lat)*99/100]), "ms-ack-p99")
		b.ReportMetric(ms(lat[len(lat)-1]), "ms-ack-max")
		b.ReportMetric(ms(cpu1-cpu0), "ms-server-cpu")
	}
}

// benchMember starts a dev server (rate limits off, extra flags), enrols
// bench-a (level 4) and bench-b (level 3) with an agreement covering
// task_send, and returns a member node of bench-a: the callers of the check
// benchmarks.
func benchMember(b *testing.B, extra ...string) *client.Client {
	return startPair(b, "bench-a", 4, "bench-b", 3, []string{"task_send"}, slices.Concat(noRateLimits, extra)...).member
}

// runChecks times b.N checks req (each must be allowed) from parallelism ×
// GOMAXPROCS goroutines of member.
func runChecks(b *testing.B, member *client.Client, req *trustfedv1.CheckInteractionRequest, parallelism int) {
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := member.Registry().CheckInteraction(context.Background(), req)
			if err != nil || resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
				b.Errorf("check: %v %v", resp.GetDecision(), err)
				return
			}
		}
	})
}
