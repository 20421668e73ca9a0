package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/client"
)

// While every registry node answers UNAVAILABLE (an election), a call with a
// deadline goes round the nodes again until one answers, and stays on it.
func TestRegistriesGoRoundAgainWhileEveryNodeIsUnavailable(t *testing.T) {
	r := &registries{clients: make([]*client.Client, 3)}
	calls := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var answered *client.Client
	err := r.do(ctx, func(_ context.Context, c *client.Client) error {
		calls++
		if calls < 8 { // two full rounds and a bit refuse
			return status.Error(codes.Unavailable, "no leader known right now")
		}
		answered = c
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 8, calls)
	require.Same(t, r.clients[(8-1)%3], answered)
	require.Equal(t, uint32(1), r.cur.Load()%3, "the node that answered is the one used next")

	// Without a deadline it gives up after a few rounds.
	calls = 0
	err = r.do(context.Background(), func(context.Context, *client.Client) error {
		calls++
		return status.Error(codes.Unavailable, "down")
	})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Equal(t, 3*failoverRounds, calls)

	// A refusal that is not about availability is returned at once.
	calls = 0
	err = r.do(ctx, func(context.Context, *client.Client) error {
		calls++
		return status.Error(codes.PermissionDenied, "no")
	})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	require.Equal(t, 1, calls)

	// A deadline ends the rounds.
	short, cancel2 := context.WithTimeout(context.Background(), 120*time.Millisecond)
	defer cancel2()
	err = r.do(short, func(context.Context, *client.Client) error {
		return status.Error(codes.Unavailable, "down")
	})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Error(t, short.Err())
}
