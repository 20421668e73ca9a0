package revocation

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sweeperState is a real state machine whose commands are stamped with the
// wall clock, as the leader stamps them.
type sweeperState struct {
	t     *testing.T
	fsm   *state.FSM
	fed   *testutil.Federation
	index uint64
}

func (s *sweeperState) apply(cmd proto.Message) error {
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: time.Now(), Principal: "token:test"})
	require.NoError(s.t, err)
	s.index++
	return s.fsm.Apply(s.index, b).(state.Result).Err
}

func (s *sweeperState) must(cmd proto.Message) {
	s.t.Helper()
	require.NoError(s.t, s.apply(cmd))
}

// The leader's real sweeper ends a session and an agreement that fall due
// after its first look (the only full scan here: SweepFullEvery is an
// hour), so through the looks that read only the time indexes.
func TestRunSweeperEndsWhatFallsDueAfterItsFullScan(t *testing.T) {
	s := &sweeperState{t: t, fsm: state.NewFSM(state.NewStore(), attestation.Verifier{}, nil), fed: testutil.NewFederation(t)}
	alice := testutil.NewAdmin("alice")
	s.must(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: alice.ID, Name: "Alice", PublicKey: alice.Public()}, ApprovalsRequired: 1})
	change := func(c *trustfedv1.AdminChange) {
		raw := testutil.ChangeBytes(t, c, time.Now())
		s.must(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)})
	}
	change(testutil.Accredit(s.fed.Issuer()))
	for _, org := range []string{"org-a", "org-b"} {
		reg, sig := s.fed.Registration(org, 2, 2, time.Now())
		s.must(&commandv1.RegisterOrganization{Registration: reg, Signature: sig})
		s.must(&commandv1.ApproveOrganization{OrganizationId: org})
	}

	store := s.fsm.Store()
	ctx, cancel := context.WithCancel(context.Background())
	runner, err := NewRunner(RunnerConfig{Store: store, SweepEvery: 50 * time.Millisecond, SweepFullEvery: time.Hour,
		Propose: func(_ context.Context, cmd proto.Message) error { return s.apply(cmd) }})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- runner.RunSweeper(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, waitDone(t, done, 5*time.Second))
	}()
	// Its first look (the full scan) comes 50 ms in; what follows falls due
	// 1 and 2 s later, so it is found by the looks that read the indexes.
	now := time.Now()
	const id = "agr-00000000000000a1"
	terms, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.AgreementTerms{
		AgreementId: id, OrganizationAId: "org-a", OrganizationBId: "org-b",
		Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"task_send"}},
		NotBefore: timestamppb.New(now.Add(-time.Minute)), NotAfter: timestamppb.New(now.Add(2 * time.Second)),
		Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true},
	})
	require.NoError(t, err)
	s.must(&commandv1.ProposeAgreement{Terms: terms})
	s.must(&commandv1.SignAgreement{AgreementId: id, OrganizationId: "org-a", Signature: s.fed.SignTerms("org-a", terms)})
	s.must(&commandv1.SignAgreement{AgreementId: id, OrganizationId: "org-b", Signature: s.fed.SignTerms("org-b", terms)})
	sessionID := state.SessionID("req-sweeper")
	s.must(&commandv1.OpenSession{SessionId: sessionID, FromOrganizationId: "org-a", ToOrganizationId: "org-b", Action: "task_send", Ttl: durationpb.New(time.Second)})

	deadline := time.After(15 * time.Second)
	for {
		rd := store.Read()
		ses, _ := rd.Session(sessionID)
		ag, _ := rd.Agreement(id)
		if ses.Status == trustfedv1.SessionStatus_SESSION_STATUS_EXPIRED && ag.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED {
			require.Contains(t, ag.TerminationReason, "end date")
			return
		}
		select {
		case <-rd.IndexWatch():
		case <-deadline:
			t.Fatalf("not swept within 15 s: session %v, agreement %v", ses.Status, ag.Status)
		}
	}
}
