package system_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// BenchmarkCheckInteraction measures CheckInteraction against a dev server
// process over gRPC/TLS on loopback, from parallel clients sharing one
// connection (as a member gateway does).
func BenchmarkCheckInteraction(b *testing.B) {
	d := startDev(b)
	c := dial(b, d.srv, d.caFile, d.token)
	waitServing(b, c)
	createOrg(b, c, "bench-a", 4)
	createOrg(b, c, "bench-b", 3)
	_, err := c.Admin().CreateAgreement(context.Background(), &trustfedv1.CreateAgreementRequest{OrganizationAId: "bench-a", OrganizationBId: "bench-b"})
	require.NoError(b, err)

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

// BenchmarkCreateOrganization measures the write path: validate, propose,
// commit (fsync) and apply on a single node, from parallel clients.
func BenchmarkCreateOrganization(b *testing.B) {
	d := startDev(b)
	c := dial(b, d.srv, d.caFile, d.token)
	waitServing(b, c)
	b.SetParallelism(16)
	b.ResetTimer()
	var n int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("org-%d-%p", nextID(&n), pb)
			_, err := c.Admin().CreateOrganization(context.Background(), &trustfedv1.CreateOrganizationRequest{OrganizationId: id, Name: id, DeclaredLevel: 2})
			if err != nil {
				b.Errorf("create: %v", err)
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
	createOrg(b, c.clients[leader], "bench-a", 4)
	createOrg(b, c.clients[leader], "bench-b", 3)
	_, err := c.clients[leader].Admin().CreateAgreement(context.Background(), &trustfedv1.CreateAgreementRequest{OrganizationAId: "bench-a", OrganizationBId: "bench-b"})
	require.NoError(b, err)
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
