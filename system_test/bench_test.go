package system_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// BenchmarkCheckInteraction measures CheckInteraction against a dev server
// process over gRPC/TLS on loopback, from parallel clients sharing one
// connection (as a member gateway does).
func BenchmarkCheckInteraction(b *testing.B) {
	d := startDev(b)
	c := dial(b, d.srv, d.caFile, d.token)
	waitServing(b, c)
	fed := testutil.NewFederation(b)
	accredit(b, c, fed, d.admins)
	enrol(b, c, fed, "bench-a", 4)
	enrol(b, c, fed, "bench-b", 3)
	agree(b, c, fed, "bench-a", "bench-b", "task_send")

	for _, mode := range []trustfedv1.Consistency{trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE, trustfedv1.Consistency_CONSISTENCY_STALE} {
		b.Run(mode.String(), func(b *testing.B) {
			req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send", Consistency: mode}
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Registry().CheckInteraction(context.Background(), req)
					if err != nil || resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
						b.Errorf("check: %v %v", resp.GetDecision(), err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkUpdateOrganization measures the write path: validate, propose,
// commit (fsync) and apply on a single node, from parallel clients.
func BenchmarkUpdateOrganization(b *testing.B) {
	d := startDev(b)
	c := dial(b, d.srv, d.caFile, d.token)
	waitServing(b, c)
	fed := testutil.NewFederation(b)
	accredit(b, c, fed, d.admins)
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
	c := startCluster(b)
	leader := c.leader(b, "n1", "n2", "n3")
	follower := "n1"
	if leader == "n1" {
		follower = "n2"
	}
	accredit(b, c.clients[leader], c.fed, c.admins)
	enrol(b, c.clients[leader], c.fed, "bench-a", 4)
	enrol(b, c.clients[leader], c.fed, "bench-b", 3)
	agree(b, c.clients[leader], c.fed, "bench-a", "bench-b", "task_send")
	for _, role := range []struct{ name, node string }{{"leader", leader}, {"follower", follower}} {
		b.Run(role.name, func(b *testing.B) {
			cl := c.clients[role.node]
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
