package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func partnersOf(r *Reader, org string) []string { return partnerIDs(r.Graph(org)) }

func (h *harness) openSession(from, to, requestID string, ttl time.Duration) string {
	h.t.Helper()
	id := SessionID(requestID)
	h.must(&commandv1.OpenSession{SessionId: id, FromOrganizationId: from, ToOrganizationId: to, Action: "task_send", Ttl: durationpb.New(ttl)})
	return id
}

func (h *harness) cascadesAbout(org string) []*trustfedv1.Cascade {
	out, _ := h.read().Cascades(org, "", 1000)
	return out
}

// The graph is kept by the state machine: agreements and sessions add and
// remove edges in the transaction that changes them.
func TestTC2GraphFollowsAgreementsAndSessions(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	for _, org := range []string{"hub", "p-one", "p-two", "p-three"} {
		h.member(org, 3, 3)
	}
	h.agreement("agr-0000000000000001", "hub", "p-one", 0)
	h.agreement("agr-0000000000000002", "p-two", "hub", 0)
	h.agreement("agr-0000000000000003", "p-one", "p-three", 0)
	r := h.read()
	require.Equal(t, []string{"p-one", "p-two"}, partnersOf(r, "hub"))
	require.Equal(t, []string{"hub", "p-three"}, partnersOf(r, "p-one"))

	ses := h.openSession("hub", "p-one", "req-s1", time.Minute)
	g := h.read().Graph("hub")
	require.Equal(t, []string{"agr-0000000000000001"}, g[0].AgreementIds)
	require.Equal(t, []string{ses}, g[0].SessionIds)

	res := h.apply(&commandv1.OpenSession{SessionId: SessionID("req-s2"), FromOrganizationId: "hub", ToOrganizationId: "p-three", Action: "ping"}, "")
	require.ErrorIs(t, res.Err, ErrFailedPrecondition, "no agreement between hub and p-three")

	termination, sig := h.fed.Termination("p-two", "agr-0000000000000002", "contract ended")
	h.must(&commandv1.TerminateAgreement{Termination: termination, Signature: sig})
	require.Equal(t, []string{"p-one"}, partnersOf(h.read(), "hub"))
	require.Equal(t, []string{"p-one"}, partnersOf(h.read(), "p-three"))
	cs := h.cascadesAbout("p-two")
	require.Len(t, cs, 1)
	require.Equal(t, trustfedv1.EventKind_EVENT_KIND_AGREEMENT_TERMINATION, cs[0].Event.Kind)
	require.Equal(t, "hub", cs[0].Deliveries[0].OrganizationId, "the other party is told")

	// Ending the agreement ends its sessions.
	termination, sig = h.fed.Termination("hub", "agr-0000000000000001", "done")
	h.must(&commandv1.TerminateAgreement{Termination: termination, Signature: sig})
	s, _ := h.read().Session(ses)
	require.Equal(t, trustfedv1.SessionStatus_SESSION_STATUS_TERMINATED, s.Status)
	require.Empty(t, partnersOf(h.read(), "hub"))
}

// TC2 in the state machine: revoking an organisation with 50 partners
// records one cascade with the 50 partners taken from the graph, ends its
// agreements and sessions, and deliveries merge monotonically.
func TestTC2RevocationCascadeRecord(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	h.member("hub", 3, 3)
	var partners []string
	for i := range 50 {
		p := fmt.Sprintf("partner-%02d", i)
		partners = append(partners, p)
		h.member(p, 3, 3)
		h.agreement(fmt.Sprintf("agr-%016x", i+1), "hub", p, 0)
	}
	ses := h.openSession("partner-07", "hub", "req-s", time.Minute)
	require.Len(t, partnersOf(h.read(), "hub"), 50)

	h.mustChange(testutil.SetStatus("hub", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED))
	r := h.read()
	require.Empty(t, partnersOf(r, "hub"), "every edge of the revoked organisation is gone")
	require.Empty(t, partnersOf(r, "partner-07"))
	s, _ := r.Session(ses)
	require.Equal(t, trustfedv1.SessionStatus_SESSION_STATUS_TERMINATED, s.Status)
	cs := h.cascadesAbout("hub")
	require.Len(t, cs, 1)
	c := cs[0]
	require.Equal(t, trustfedv1.EventKind_EVENT_KIND_REVOCATION, c.Event.Kind)
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED, c.Event.Status)
	require.Equal(t, h.index, c.Event.Index)
	require.Len(t, c.Deliveries, 50)
	for i, d := range c.Deliveries {
		require.Equal(t, partners[i], d.OrganizationId)
	}
	require.Len(t, r.IncompleteCascades(), 1)
	evs, _ := r.CascadesFor("partner-10", 0)
	require.Len(t, evs, 1)

	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(h.now.Add(d)) }
	ack := func(p string, ch trustfedv1.DeliveryChannel, d time.Duration, attempts uint32) *commandv1.DeliveryUpdate {
		return &commandv1.DeliveryUpdate{CascadeId: c.Id, Delivery: &trustfedv1.Delivery{OrganizationId: p, DispatchTime: at(0), FirstAttemptTime: at(d),
			LastAttemptTime: at(d), Attempts: attempts, AckTime: at(d), Channel: ch}}
	}
	h.must(&commandv1.RecordDeliveries{Updates: []*commandv1.DeliveryUpdate{ack("partner-00", trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK, time.Second, 2)}})
	h.must(&commandv1.RecordDeliveries{Updates: []*commandv1.DeliveryUpdate{ack("partner-00", trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_STREAM, 3*time.Second, 1)}})
	got, _ := h.read().Cascade(c.Id)
	d := got.Deliveries[0]
	require.Equal(t, trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK, d.Channel, "the first ack stays: a partner is never acked twice")
	require.Equal(t, at(time.Second).AsTime(), d.AckTime.AsTime())
	require.EqualValues(t, 2, d.Attempts, "attempts only grow")
	require.EqualValues(t, 1, got.Acked)

	res := h.apply(&commandv1.RecordDeliveries{Updates: []*commandv1.DeliveryUpdate{{CascadeId: "evt-0000000000000000", Delivery: &trustfedv1.Delivery{OrganizationId: "partner-01"}}}}, "")
	require.ErrorIs(t, res.Err, ErrNotFound)
	res = h.apply(&commandv1.RecordDeliveries{Updates: []*commandv1.DeliveryUpdate{ack("hub", trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_STREAM, 0, 1)}}, "")
	require.ErrorIs(t, res.Err, ErrInvalidArgument, "the subject is not one of its partners")

	var all []*commandv1.DeliveryUpdate
	for _, p := range partners[1:] {
		all = append(all, ack(p, trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK, 2*time.Second, 1))
	}
	h.must(&commandv1.RecordDeliveries{Updates: all})
	got, _ = h.read().Cascade(c.Id)
	require.EqualValues(t, 50, got.Acked)
	require.NotNil(t, got.CompleteTime)
	require.Empty(t, h.read().IncompleteCascades())
}

// Sweep ends what time ended: sessions not heartbeated, agreements past
// their end date.
func TestSweep(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.mustChange(testutil.Policy(&trustfedv1.FederationPolicyChange{OnboardingCapLevel: u32(4)}))
	h.member("org-a", 3, 3)
	h.member("org-b", 3, 3)
	h.agreement("agr-0000000000000001", "org-a", "org-b", 0)
	ses := h.openSession("org-a", "org-b", "req-1", 10*time.Second)
	require.False(t, h.read().SweepDue(h.now))

	h.now = h.now.Add(5 * time.Second)
	h.must(&commandv1.HeartbeatSession{SessionId: ses, OrganizationId: "org-b"})
	h.now = h.now.Add(9 * time.Second)
	require.False(t, h.read().SweepDue(h.now), "the heartbeat extended the session")
	h.now = h.now.Add(2 * time.Second)
	require.True(t, h.read().SweepDue(h.now))
	h.must(&commandv1.Sweep{})
	s, _ := h.read().Session(ses)
	require.Equal(t, trustfedv1.SessionStatus_SESSION_STATUS_EXPIRED, s.Status)
	require.Equal(t, []string{"org-b"}, partnersOf(h.read(), "org-a"), "the agreement edge stays")
	require.ErrorIs(t, h.apply(&commandv1.HeartbeatSession{SessionId: ses, OrganizationId: "org-a"}, "").Err, ErrFailedPrecondition)

	h.now = h.now.Add(3 * 365 * 24 * time.Hour) // past the agreement's end date
	require.True(t, h.read().SweepDue(h.now))
	h.must(&commandv1.Sweep{})
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, h.agreementStatus("agr-0000000000000001"))
	require.Empty(t, partnersOf(h.read(), "org-a"))
	require.Len(t, h.read().IncompleteCascades(), 1, "both parties are told the agreement ended")
	require.False(t, h.read().SweepDue(h.now))
}
