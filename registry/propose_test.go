package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// A proposal whose caller set no deadline still waits a bounded time, and
// carries the leader's time and the caller as its principal.
func TestProposalIsBoundedAndStamped(t *testing.T) {
	r := newMemberRig(t, false)
	var deadline time.Time
	var env commandv1.Envelope
	r.raft.onApply = func(ctx context.Context, cmd []byte) {
		deadline, _ = ctx.Deadline()
		require.NoError(t, proto.Unmarshal(cmd, &env))
	}
	ctx := withPrincipal(context.Background(), Principal{ID: "token:0123456789ab", Role: RoleAdmin})
	start := time.Now()
	_, err := r.s.propose(ctx, &commandv1.HeartbeatSession{SessionId: "nope", OrganizationId: "acme"}, "rid-1")
	require.Error(t, err, "a heartbeat of no session is refused by the state machine")
	require.False(t, deadline.IsZero(), "a proposal without the caller's deadline waits forever")
	require.WithinDuration(t, start.Add(DefaultProposeTimeout), deadline, time.Second)
	require.Equal(t, r.time().UTC(), env.Time.AsTime(), "stamped with the leader's clock")
	require.Equal(t, "token:0123456789ab", env.Principal)
	require.Equal(t, "rid-1", env.RequestId)

	// The caller's own deadline is kept.
	short, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	want, _ := short.Deadline()
	_, _ = r.s.propose(short, &commandv1.HeartbeatSession{SessionId: "nope", OrganizationId: "acme"}, "rid-2")
	require.Equal(t, want, deadline)
}

// applierFunc is an Applier whose answers a test chooses (a state machine
// that answers something else than a state.Result is a fault no real part
// can produce).
type applierFunc func(ctx context.Context, cmd []byte) (consensus.ApplyResult, error)

func (f applierFunc) Apply(ctx context.Context, cmd []byte) (consensus.ApplyResult, error) {
	return f(ctx, cmd)
}

// Propose returns what the state machine answered, typed, or an error:
// never a panic on an answer of another type, never a time but the one
// given.
func TestProposeTypedResult(t *testing.T) {
	now := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	cmd := &commandv1.HeartbeatSession{SessionId: "s", OrganizationId: "acme"}
	meta := state.EnvelopeMeta{Time: now, Principal: "system:test"}
	answer := func(resp any, err error) Applier {
		return applierFunc(func(context.Context, []byte) (consensus.ApplyResult, error) {
			return consensus.ApplyResult{Index: 7, Response: resp, Term: 3}, err
		})
	}

	r, err := Propose(context.Background(), answer(state.Result{Index: 7}, nil), cmd, meta)
	require.NoError(t, err)
	require.Equal(t, uint64(7), r.Index)

	_, err = Propose(context.Background(), answer(errors.New("not a result"), nil), cmd, meta)
	require.ErrorContains(t, err, "answered *errors.errorString, not state.Result")

	refused := state.Invalid("session_id", "no such session")
	_, err = Propose(context.Background(), answer(state.Result{Index: 7, Err: refused}, nil), cmd, meta)
	require.Equal(t, refused, err, "the state machine's refusal, unwrapped: its status is the caller's")

	_, err = Propose(context.Background(), answer(nil, consensus.ErrNotLeader), cmd, meta)
	require.ErrorIs(t, err, consensus.ErrNotLeader)

	_, err = Propose(context.Background(), answer(state.Result{}, nil), cmd, state.EnvelopeMeta{Principal: "system:test"})
	require.ErrorContains(t, err, "no time")
}
