package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// MaxStalenessHeader is the request metadata (REST: the header
// Grpc-Metadata-Trustfed-Max-Staleness) bounding a CONSISTENCY_STALE read:
// how long ago this node may last have heard from the leader, as a Go
// duration ("5s", "2m").
const MaxStalenessHeader = "trustfed-max-staleness"

// DefaultMaxStaleness bounds a stale read whose caller names no bound.
const DefaultMaxStaleness = time.Minute

// ErrTooStale refuses a stale read past its bound (UNAVAILABLE: ask
// another node, or later).
var ErrTooStale = errors.New("stale read refused")

// requestConsistency is the consistency a read request asks for
// (UNSPECIFIED for a request without the field).
func requestConsistency(req any) trustfedv1.Consistency {
	m, ok := req.(proto.Message)
	if !ok || m == nil {
		return trustfedv1.Consistency_CONSISTENCY_UNSPECIFIED
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("consistency")
	if fd == nil || fd.Kind() != protoreflect.EnumKind {
		return trustfedv1.Consistency_CONSISTENCY_UNSPECIFIED
	}
	return trustfedv1.Consistency(r.Get(fd).Enum())
}

// maxStaleness is the caller's bound for a stale read.
func maxStaleness(ctx context.Context) (time.Duration, error) {
	vals := metadata.ValueFromIncomingContext(ctx, MaxStalenessHeader)
	if len(vals) == 0 {
		return DefaultMaxStaleness, nil
	}
	d, err := time.ParseDuration(vals[0])
	if err != nil || d <= 0 {
		return 0, state.Invalid(MaxStalenessHeader, "%q is not a positive duration (e.g. 5s, 2m)", truncateHeader(vals[0]))
	}
	return d, nil
}

func truncateHeader(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// withinStaleness admits a stale read on this node: the leader itself, or
// a node that heard from the leader within the caller's max staleness.
func (s *Server) withinStaleness(ctx context.Context) error {
	bound, err := maxStaleness(ctx)
	if err != nil {
		return err
	}
	last := s.raft.LastContact()
	if last <= bound {
		return nil
	}
	ago := "has not heard from a leader since it started or last led"
	if last != time.Duration(math.MaxInt64) {
		ago = fmt.Sprintf("last heard from the leader %s ago", last.Round(time.Millisecond))
	}
	return fmt.Errorf("%w: this node %s, more than the max staleness %s (%s; default %s): ask another node or retry",
		ErrTooStale, ago, bound, MaxStalenessHeader, DefaultMaxStaleness)
}
