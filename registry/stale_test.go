package registry

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

func TestRequestConsistencyAndMaxStaleness(t *testing.T) {
	require.Equal(t, trustfedv1.Consistency_CONSISTENCY_STALE,
		requestConsistency(&trustfedv1.GetOrganizationRequest{Consistency: trustfedv1.Consistency_CONSISTENCY_STALE}))
	require.Equal(t, trustfedv1.Consistency_CONSISTENCY_UNSPECIFIED, requestConsistency(&trustfedv1.StatusRequest{}))
	require.Equal(t, trustfedv1.Consistency_CONSISTENCY_UNSPECIFIED, requestConsistency(nil))

	d, err := maxStaleness(context.Background())
	require.NoError(t, err)
	require.Equal(t, DefaultMaxStaleness, d)
	in := func(v string) context.Context {
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs(MaxStalenessHeader, v))
	}
	d, err = maxStaleness(in("2m"))
	require.NoError(t, err)
	require.Equal(t, 2*time.Minute, d)
	for _, bad := range []string{"soon", "-1s", "0s"} {
		_, err = maxStaleness(in(bad))
		require.ErrorIs(t, err, state.ErrInvalidArgument, bad)
		require.ErrorContains(t, err, MaxStalenessHeader)
	}
}
