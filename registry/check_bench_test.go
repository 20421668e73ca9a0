package registry_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// BenchmarkCheckInteraction drives audited checks through a real dev
// server in this process (Raft on disk, gRPC over mutual TLS on loopback,
// the audit batcher, the quorum-of-one certificate) from a member node of
// bench-a to bench-b (an agreement covers task_send). allocs/op and B/op
// count the whole process, the member's client included: compare them
// between commits, not with a server alone. "serial" is one caller (one
// check per audit entry); "parallel" 16 callers per CPU sharing the
// connection, as a member gateway does; "batch" one CheckInteractions call
// of 64 items, reported per check.
func BenchmarkCheckInteraction(b *testing.B) {
	member := benchMember(b)
	req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
	check := func(b *testing.B) {
		resp, err := member.Registry().CheckInteraction(context.Background(), req)
		if err != nil || resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
			b.Fatalf("check: %v %v", resp.GetDecision(), err)
		}
	}
	for range 50 { // warm up: connections, caches, the first audit entries
		check(b)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			check(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := member.Registry().CheckInteraction(context.Background(), req)
				if err != nil || resp.Decision != trustfedv1.Decision_DECISION_ALLOW {
					b.Errorf("check: %v %v", resp.GetDecision(), err)
					return
				}
			}
		})
	})
	const n = 64
	checks := make([]*trustfedv1.CheckInteractionRequest, n)
	for i := range checks {
		checks[i] = req
	}
	batch := &trustfedv1.CheckInteractionsRequest{Checks: checks}
	b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			resp, err := member.Registry().CheckInteractions(context.Background(), batch)
			if err != nil || len(resp.Results) != n {
				b.Fatalf("checks: %d results, %v", len(resp.GetResults()), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*b.N), "ns/check")
	})
}

// benchMember starts a dev server without rate limits, accredits the test
// federation's issuer, enrols bench-a (level 4) and bench-b (level 3) with
// an agreement covering task_send and returns a client of a member node of
// bench-a.
func benchMember(b *testing.B) *client.Client {
	b.Helper()
	d := testserver.StartDev(b, func(c *server.Config) {
		c.Limits.Checks, c.Limits.Writes, c.Limits.Reads = registry.Limit{}, registry.Limit{}, registry.Limit{}
	})
	admin := d.Client(b)
	key, err := attestation.LoadPrivateKey(d.Info.AdminKeyFile)
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	fed := testutil.NewFederation(b)
	for _, c := range []*trustfedv1.AdminChange{
		testutil.Accredit(fed.Issuer()),
		testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(4)}),
	} {
		c.Reason = "bench"
		if _, err := admin.ProposeAdminChange(ctx, key, c, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	for org, level := range map[string]uint32{"bench-a": 4, "bench-b": 3} {
		reg, sig := fed.Registration(org, level, level, time.Now())
		if _, err := admin.Membership().RegisterOrganization(ctx, &trustfedv1.RegisterOrganizationRequest{Registration: reg, Signature: sig}); err != nil {
			b.Fatal(err)
		}
		if _, err := admin.Admin().ApproveOrganization(ctx, &trustfedv1.ApproveOrganizationRequest{OrganizationId: org}); err != nil {
			b.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	p, err := admin.Membership().ProposeAgreement(ctx, &trustfedv1.ProposeAgreementRequest{
		OrganizationAId: "bench-a", OrganizationBId: "bench-b",
		Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"task_send"}},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(24 * time.Hour)),
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, org := range []string{"bench-a", "bench-b"} {
		if _, err := admin.Membership().SignAgreement(ctx, &trustfedv1.SignAgreementRequest{AgreementId: p.Agreement.Id, OrganizationId: org, Signature: fed.SignTerms(org, p.Agreement.Terms)}); err != nil {
			b.Fatal(err)
		}
	}
	m := testutil.EnrolMember(b, admin, fed, "bench-a", "")
	return m.Dial(b, client.Config{Addr: d.GRPCAddr(), CACertFile: d.CAFile(), Timeout: 30 * time.Second})
}
