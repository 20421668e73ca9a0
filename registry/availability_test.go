package registry

import (
	"context"
	"crypto/rand"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A node that has not caught up with the leader's log answers every call
// UNAVAILABLE — a token it does not know may exist, so "unknown token"
// would be a lie — and public reads too; it is an availability event, not
// an authentication failure. Once caught up, the same token is refused.
func TestCatchingUpNodeAnswersUnavailable(t *testing.T) {
	r := newMemberRig(t, false)
	_, secret, err := attestation.NewToken(rand.Reader)
	require.NoError(t, err)
	call := func(method string, md metadata.MD) error {
		ctx := metadata.NewIncomingContext(context.Background(), md)
		_, err := r.s.unaryInterceptor(ctx, &trustfedv1.ListOrganizationsRequest{}, &grpc.UnaryServerInfo{FullMethod: method},
			func(context.Context, any) (any, error) { return &trustfedv1.ListOrganizationsResponse{}, nil })
		return err
	}
	unknown := metadata.Pairs("authorization", "Bearer "+secret)
	list := trustfedv1.RegistryService_ListOrganizations_FullMethodName

	r.raft.behind.Store(true)
	for _, tc := range []struct {
		method string
		md     metadata.MD
	}{{list, unknown}, {list, metadata.MD{}}, {trustfedv1.RegistryService_GetKeys_FullMethodName, metadata.MD{}}} {
		err := call(tc.method, tc.md)
		require.Equal(t, codes.Unavailable, status.Code(err), "%s: %v", tc.method, err)
		require.Contains(t, status.Convert(err).Message(), "catching up")
	}
	_, meta, err := r.s.read(context.Background(), trustfedv1.Consistency_CONSISTENCY_STALE)
	require.Nil(t, meta)
	require.Equal(t, codes.Unavailable, status.Code(toStatus(r.s.log, list, err)), "even a stale read waits for the catch-up")
	require.Zero(t, counterValue(t, r.s.metrics.authFailures.WithLabelValues(codes.Unavailable.String())), "no authentication failure")
	require.Equal(t, 3.0, counterValue(t, r.s.metrics.unavail.WithLabelValues(unavailCatchingUp)), "three availability events")

	r.raft.behind.Store(false)
	err = call(list, unknown)
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.Contains(t, status.Convert(err).Message(), "unknown token")
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
