package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

// DefaultProposeTimeout bounds a proposal whose caller set no deadline.
const DefaultProposeTimeout = 10 * time.Second

// Applier replicates an encoded command and returns once this node applied
// it; *consensus.Node and Raft satisfy it.
type Applier interface {
	Apply(ctx context.Context, cmd []byte) (consensus.ApplyResult, error)
}

// errNoLeaderTime: a proposal must carry the time the leader stamps on it;
// the state machine decides with that time, never with its own clock.
var errNoLeaderTime = errors.New("no time stamped on the command")

// Propose is the one path from a command to the log, for the services and
// the leader's own tasks alike: encode cmd in an envelope with meta (the
// leader's time, the request id, the principal), apply it within ctx's
// deadline (DefaultProposeTimeout if ctx has none) and return the state
// machine's result. The state machine's refusal (Result.Err) is the error,
// unwrapped, so that its status reaches the caller as it is.
func Propose(ctx context.Context, a Applier, cmd proto.Message, meta state.EnvelopeMeta) (state.Result, error) {
	r, _, err := proposeCommitted(ctx, a, cmd, meta)
	return r, err
}

// proposeCommitted is Propose that also returns the Raft term the entry
// was committed in (see consensus.ApplyResult.Term).
func proposeCommitted(ctx context.Context, a Applier, cmd proto.Message, meta state.EnvelopeMeta) (state.Result, uint64, error) {
	r, applied, err := proposeAs[state.Result](ctx, a, cmd, meta)
	if err != nil {
		return state.Result{}, 0, err
	}
	if r.Err != nil {
		return state.Result{}, 0, r.Err
	}
	return r, applied.Term, nil
}

// proposeAs encodes, applies and returns the state machine's answer as a
// T, or an error when it answered something else.
func proposeAs[T any](ctx context.Context, a Applier, cmd proto.Message, meta state.EnvelopeMeta) (T, consensus.ApplyResult, error) {
	var zero T
	if meta.Time.IsZero() {
		return zero, consensus.ApplyResult{}, fmt.Errorf("propose %T: %w", cmd, errNoLeaderTime)
	}
	meta.Time = meta.Time.UTC()
	b, err := state.Encode(cmd, meta)
	if err != nil {
		return zero, consensus.ApplyResult{}, fmt.Errorf("encode command: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultProposeTimeout)
		defer cancel()
	}
	applied, err := a.Apply(ctx, b)
	if err != nil {
		return zero, applied, fmt.Errorf("propose %T: %w", cmd, err)
	}
	t, ok := applied.Response.(T)
	if !ok {
		return zero, applied, fmt.Errorf("propose %T: the state machine answered %T, not %T", cmd, applied.Response, zero)
	}
	return t, applied, nil
}
