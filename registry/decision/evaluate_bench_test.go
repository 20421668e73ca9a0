package decision_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
)

// BenchmarkEvaluate evaluates a check on the state BenchmarkCheckInteraction
// (registry/check_bench_test.go) serves: two onboarding organisations (the
// federation policy caps them at 4) with passports from one issuer, and an
// agreement between them covering task_send whose terms are the API's
// default (on_passport_expiry), or that also need a minimum level.
func BenchmarkEvaluate(b *testing.B) {
	for _, c := range []struct {
		name string
		term *trustfedv1.TerminationConditions
	}{
		{"passport-expiry", &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, OnPassportExpiry: true}},
		{"min-level", &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true, OnPassportExpiry: true, MinLevel: 2}},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := newReplayHarness(b)
			h.must(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: alice.ID, Name: "Alice", PublicKey: alice.Public()}, ApprovalsRequired: 1})
			h.change(testutil.Accredit(h.fed.Issuer()))
			h.change(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(4)}))
			h.member("bench-a")
			h.member("bench-b")
			terms, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.AgreementTerms{
				AgreementId: "agr-0000000000000001", OrganizationAId: "bench-a", OrganizationBId: "bench-b",
				Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"task_send"}},
				NotBefore: timestamppb.New(h.now), NotAfter: timestamppb.New(h.now.Add(24 * time.Hour)),
				Termination: c.term,
			})
			require.NoError(b, err)
			h.must(&commandv1.ProposeAgreement{Terms: terms})
			for _, org := range []string{"bench-a", "bench-b"} {
				h.must(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: org, Signature: h.fed.SignTerms(org, terms)})
			}
			r := h.fsm.Store().Read()
			req := &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send"}
			resp, err := decision.Evaluate(r, req, h.now, 0)
			require.NoError(b, err)
			require.Equal(b, trustfedv1.Decision_DECISION_ALLOW, resp.Decision, "%v", resp.Reasons)
			require.Len(b, resp.FromLevelCaps, 3, "onboarding")
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decision.Evaluate(r, req, h.now, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
