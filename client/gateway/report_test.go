package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/gateway"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// What a gateway refuses lands in the registry's audit log: an inbound
// envelope its controls refuse, and an outbound message its own controls
// stop, each as a GATEWAY_REFUSAL entry under the refusing organisation,
// naming the partner, the action, the direction and the code.
func TestRefusalsReachTheAuditLog(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	cap := newCapture()
	bare := func(c *gateway.Config) { c.Transport, c.Policy = cap, nil }
	receiver := f.start(t, "bank-b", listen(t), nil, bare)
	sender := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) { c.Transport = cap })
	_, err := sender.Send(ctxT(t), "bank-b", "task_send", []byte("hello"), gateway.SendOptions{})
	require.NoError(t, err)
	requireRefused(t, receiver, cap.last(t, "bank-b"), gateway.CodeControls)

	stopped := f.start(t, "bank-a", listen(t), nil, bare)
	_, err = stopped.Send(ctxT(t), "bank-b", "task_send", []byte("hello"), gateway.SendOptions{})
	require.Equal(t, gateway.CodeControls, gateway.CodeOf(err), "%v", err)

	for _, want := range []struct{ org, partner, dir string }{{"bank-b", "bank-a", "inbound"}, {"bank-a", "bank-b", "outbound"}} {
		testutil.Eventually(t, 30*time.Second, want.org+"'s refusal in the audit log", func() error {
			list, err := f.admin.Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{Type: "GATEWAY_REFUSAL", OrganizationId: want.org})
			if err != nil {
				return err
			}
			for _, r := range list.Records {
				g := r.GetEntry().GetGatewayRefusal()
				if g.GetOrganizationId() == want.org && g.GetPartnerOrganizationId() == want.partner && g.GetDirection() == want.dir &&
					g.GetCode() == string(gateway.CodeControls) && g.GetAction() == "task_send" && g.GetNodeId() != "" {
					return nil
				}
			}
			return fmt.Errorf("%d GATEWAY_REFUSAL entries, none %s %s from %s", len(list.Records), want.dir, want.partner, want.org)
		})
	}
	require.GreaterOrEqual(t, receiver.Stats().RefusalsReported, uint64(1))
	require.GreaterOrEqual(t, stopped.Stats().RefusalsReported, uint64(1))
}
