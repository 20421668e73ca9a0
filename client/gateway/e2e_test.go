package gateway_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/gateway"
)

// TestEndToEndRevocationStopsBothSides: two organisations' gateways
// exchange tasks through a real dev registry (answers come back sealed);
// once bank-b is revoked, bank-a refuses to send to it (the registry's
// DENY, after its cache was invalidated by the event) and refuses what
// bank-b sends with a decision made before the revocation (stale).
func TestEndToEndRevocationStopsBothSides(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	a, b := f.pair(t, "bank-a", "bank-b")

	for i := range 3 {
		ans, err := a.Send(ctxT(t), "bank-b", "task_send", fmt.Appendf(nil, "task %d", i), gateway.SendOptions{})
		require.NoError(t, err)
		require.NotNil(t, ans, "bank-b answers")
		require.Equal(t, fmt.Sprintf("ok:task %d", i), string(ans.Payload))
		require.Equal(t, "bank-b", ans.From)
		got := <-b.inbox
		require.Equal(t, "bank-a", got.From)
		require.Equal(t, a.member.Node, got.FromNode)
	}
	// bank-b has a cached decision for bank-b → bank-a from its answers.
	_, err := b.Send(ctxT(t), "bank-a", "task_send", []byte("before"), gateway.SendOptions{})
	require.NoError(t, err)

	f.revoke(t, "bank-b")

	eventually(t, "bank-a refuses to send to the revoked bank-b", func() error {
		_, err := a.Send(ctxT(t), "bank-b", "task_send", []byte("after"), gateway.SendOptions{})
		if gateway.CodeOf(err) != gateway.CodeDecisionDenied {
			return fmt.Errorf("send: %v", err)
		}
		return nil
	})
	// bank-b's own gateway still holds its decision (a revoked organisation
	// learns nothing from its partners' stream); bank-a refuses it.
	_, err = b.Send(ctxT(t), "bank-a", "task_send", []byte("after"), gateway.SendOptions{})
	require.Error(t, err)
	require.Contains(t, []gateway.Code{gateway.CodeRefusedByPartner, gateway.CodeNotAuthorized, gateway.CodeDecisionDenied}, gateway.CodeOf(err), "%v", err)
	var r *gateway.RefusedError
	if gateway.CodeOf(err) == gateway.CodeRefusedByPartner {
		require.ErrorAs(t, err, &r)
		require.Equal(t, gateway.CodeDecisionStale, r.PartnerCode, "%v", err)
	}
	// Once the registry refuses bank-b's credentials, its gateway drops its
	// stream: it serves no decision and accepts no envelope any more.
	eventually(t, "bank-b's gateway stops", func() error {
		if _, err := b.Send(ctxT(t), "bank-a", "task_send", []byte("again"), gateway.SendOptions{}); gateway.CodeOf(err) != gateway.CodeNotAuthorized {
			return fmt.Errorf("send: %v", err)
		}
		if b.Healthy() {
			return errNotYet
		}
		return nil
	})
}
