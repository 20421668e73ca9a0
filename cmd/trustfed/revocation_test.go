package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestDrawProgress(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := &trustfedv1.Cascade{StartTime: timestamppb.New(start), Acked: 25, CompleteTime: timestamppb.New(start.Add(3200 * time.Millisecond))}
	for range 50 {
		c.Deliveries = append(c.Deliveries, &trustfedv1.Delivery{})
	}
	var b bytes.Buffer
	drawProgress(&b, c)
	require.Equal(t, "\r["+strings.Repeat("#", 15)+strings.Repeat("-", 15)+"] 25/50 acked  3.2s ", b.String())

	b.Reset()
	drawProgress(&b, &trustfedv1.Cascade{StartTime: timestamppb.New(start), CompleteTime: timestamppb.New(start)})
	require.Equal(t, "\r["+strings.Repeat("#", 30)+"] 0/0 acked  0s ", b.String(), "nobody to notify is complete")
}

func TestWriteCascade(t *testing.T) {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	c := &trustfedv1.Cascade{
		Id:        "evt-00000000000000aa",
		Event:     &trustfedv1.Event{Kind: trustfedv1.EventKind_EVENT_KIND_REVOCATION, OrganizationId: "hub", Reason: "key compromised", Index: 42},
		StartTime: timestamppb.New(start), Acked: 1,
		Deliveries: []*trustfedv1.Delivery{
			{OrganizationId: "p-1", Attempts: 2, FirstAttemptTime: timestamppb.New(start), AckTime: timestamppb.New(start.Add(time.Second)), Channel: trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK},
			{OrganizationId: "p-2", Attempts: 5, EscalateTime: timestamppb.New(start.Add(240 * time.Second)), LastError: "503"},
		},
	}
	var b bytes.Buffer
	require.NoError(t, writeCascade(&b, c, nil))
	out := squeeze(b.String())
	require.Contains(t, out, "Event: REVOCATION of hub\n")
	require.Contains(t, out, "Acknowledged: 1 of 2\n")
	require.Contains(t, out, "p-1 WEBHOOK 2 2026-11-23T12:00:00Z 2026-11-23T12:00:01Z - -\n")
	require.Contains(t, out, "p-2 - 5 - - 2026-11-23T12:04:00Z 503\n")
	require.NotContains(t, out, "Complete:")
}
