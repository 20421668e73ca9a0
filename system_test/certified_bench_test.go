package system_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// BenchmarkCertifiedChecks measures audited checks — quorum-certified
// since decisions are vouched for by a quorum of nodes — on a dev server
// and on a 3-node cluster with the callers spread over the nodes: checks/s
// and p50/p99 latency. With TRUSTFED_BENCH_BASELINE_BIN set to another
// trustfed binary (e.g. built from the commit before quorum certification),
// every shape runs against it too, in the same run, so the two compare as
// ratios on one machine:
//
//	git worktree add /tmp/before <commit> && (cd /tmp/before && go build -o /tmp/trustfed-before ./cmd/trustfed)
//	TRUSTFED_BENCH_BASELINE_BIN=/tmp/trustfed-before go test -run '^$' -bench CertifiedChecks -benchtime 5s ./system_test/
func BenchmarkCertifiedChecks(b *testing.B) {
	bins := []struct{ name, path string }{{"current", bin}}
	if base := os.Getenv("TRUSTFED_BENCH_BASELINE_BIN"); base != "" {
		bins = append([]struct{ name, path string }{{"baseline", base}}, bins...)
	}
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
	for _, shape := range []string{"dev", "cluster3-spread"} {
		for _, bb := range bins {
			b.Run(fmt.Sprintf("%s/bin=%s", shape, bb.name), func(b *testing.B) {
				saved := bin
				bin = bb.path
				defer func() { bin = saved }()
				var members []*client.Client
				switch shape {
				case "dev":
					members = []*client.Client{benchMember(b)}
				default:
					c := startCluster(b, noRateLimits...)
					leader := c.leader(b, "n1", "n2", "n3")
					accredit(b, c.clients[leader], c.fed, c.admins)
					enrol(b, c.clients[leader], c.fed, "bench-a", 4)
					enrol(b, c.clients[leader], c.fed, "bench-b", 3)
					agree(b, c.clients[leader], c.fed, "bench-a", "bench-b", "task_send")
					for _, m := range c.memberClients(b, c.clients[leader], "bench-a") {
						members = append(members, m)
					}
				}
				timedChecks(b, members, req, 64)
			})
		}
	}
}

// timedChecks runs b.N checks from callers goroutines, spread round-robin
// over members, and reports checks/s and the p50/p99 latency. A check
// answered UNAVAILABLE (a leader change under load: the cluster runs with
// test timeouts) is retried, its latency counted from the first try, and
// the retries reported.
func timedChecks(b *testing.B, members []*client.Client, req *trustfedv1.CheckInteractionRequest, callers int) {
	var next, retries atomic.Int64
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range callers {
		m := members[i%len(members)]
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				resp, err := m.Registry().CheckInteraction(context.Background(), req)
				for tries := 0; status.Code(err) == codes.Unavailable && tries < 100; tries++ {
					retries.Add(1)
					resp, err = m.Registry().CheckInteraction(context.Background(), req)
				}
				if err != nil || resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
					b.Errorf("check: %v %v", resp.GetDecision(), err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "checks/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(retries.Load()), "retries")
}
