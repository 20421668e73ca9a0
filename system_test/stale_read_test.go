package system_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Without a leader (two of three nodes gone), the survivor still answers
// status for itself and CONSISTENCY_STALE reads within the caller's max
// staleness (authenticated against its local state); past the bound, and
// for linearizable reads, it refuses.
func TestStaleReadsWithoutALeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startCluster(t)
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	accredit(t, c.clients[leader], c.fed, c.admins)
	enrol(t, c.clients[leader], c.fed, "acme-bank", 3)
	var survivor string
	for _, id := range all {
		if id != leader {
			survivor = id
		}
	}
	cl := c.clients[survivor]
	testutil.Eventually(t, 30*time.Second, survivor+" holds acme-bank", func() error {
		_, err := cl.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "acme-bank"})
		return err
	})
	for _, id := range all {
		if id != survivor {
			c.servers[id].Kill()
		}
	}
	testutil.Eventually(t, 30*time.Second, survivor+" knows no leader", func() error {
		st, err := cl.Cluster().Status(ctxT(t), &trustfedv1.StatusRequest{})
		if err != nil {
			return err // status must answer for the node itself
		}
		if st.Leader != nil && st.Leader.NodeId != "" {
			return fmt.Errorf("leader %s", st.Leader.NodeId)
		}
		if st.Ready || st.NotReady == "" {
			return fmt.Errorf("ready %v %q", st.Ready, st.NotReady)
		}
		return nil
	})

	stale := func(maxStaleness string) (*trustfedv1.GetOrganizationResponse, error) {
		ctx := ctxT(t)
		if maxStaleness != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "trustfed-max-staleness", maxStaleness)
		}
		return cl.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: "acme-bank", Consistency: trustfedv1.Consistency_CONSISTENCY_STALE})
	}
	resp, err := stale("1h")
	require.NoError(t, err)
	require.Equal(t, "acme-bank", resp.Organization.Id)
	require.Equal(t, trustfedv1.Consistency_CONSISTENCY_STALE, resp.Meta.Consistency)
	require.False(t, resp.Meta.KnownLeader)
	require.Positive(t, resp.Meta.LastContact.AsDuration())

	_, err = stale("1ms")
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "max staleness 1ms")

	_, err = stale("soon")
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "trustfed-max-staleness")

	ctx, cancel := context.WithTimeout(ctxT(t), 3*time.Second)
	defer cancel()
	_, err = cl.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: "acme-bank"})
	require.Error(t, err, "a linearizable read needs a leader")
}
