package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/trustfed/trustfed/consensus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Availability events. A call this node cannot serve because it has no
// ready leader to ask, its leader changed under it or it is still catching
// up with the log is not a refused credential: it is logged as "request not
// served", counted in trustfed_unavailable_total by reason, answered
// UNAVAILABLE (retryable) and not written to the audit log as an
// AUTH_FAILURE. (Committing an audit entry needs the very leader that is
// missing.) Refused credentials and permissions stay AUTH_FAILURE entries.

// Reasons of trustfed_unavailable_total.
const (
	unavailCatchingUp    = "catching_up"
	unavailNoLeader      = "no_leader"
	unavailLeaderChanged = "leader_changed"
	unavailUnreachable   = "leader_unreachable"
	unavailDeadline      = "deadline"
	unavailClosed        = "shutting_down"
	unavailStorage       = "storage_fault"
)

var unavailableReasons = []string{unavailCatchingUp, unavailNoLeader, unavailLeaderChanged, unavailUnreachable, unavailDeadline, unavailClosed, unavailStorage}

// unavailableReason names the availability event err is, if it is one.
func unavailableReason(err error) (string, bool) {
	switch {
	case errors.Is(err, consensus.ErrCatchingUp):
		return unavailCatchingUp, true
	case errors.Is(err, consensus.ErrLeaderChanged), errors.Is(err, consensus.ErrUnknownOutcome):
		return unavailLeaderChanged, true
	case errors.Is(err, consensus.ErrLeaderUnreachable):
		return unavailUnreachable, true
	case errors.Is(err, consensus.ErrNoLeader), errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrNotReady):
		return unavailNoLeader, true
	case errors.Is(err, consensus.ErrClosed):
		return unavailClosed, true
	case errors.Is(err, consensus.ErrStorage):
		return unavailStorage, true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return unavailDeadline, true
	}
	return "", false
}

// caughtUp is ErrCatchingUp (wrapped with what was applied) until this
// node's state holds what the leader had committed when it started.
func (s *Server) caughtUp() error {
	if s.raft.CaughtUp() {
		return nil
	}
	st := s.raft.Status()
	return fmt.Errorf("%w (applied index %d, commit index %d)", consensus.ErrCatchingUp, st.AppliedIndex, st.CommitIndex)
}

// refuse turns the error that stopped a call before its handler into the
// caller's status and records it: an availability event (above), or a
// refused authentication or authorisation (an AUTH_FAILURE audit entry
// under the caller's and the request's organisations).
func (s *Server) refuse(ctx context.Context, method string, p Principal, err error, about ...string) error {
	st := toStatus(s.log, method, err)
	reason, ok := unavailableReason(err)
	if !ok {
		// An answer relayed from the leader (its read index, say) says
		// only its code.
		switch status.Code(st) {
		case codes.Unavailable:
			reason, ok = unavailNoLeader, true
		case codes.DeadlineExceeded, codes.Canceled:
			reason, ok = unavailDeadline, true
		}
	}
	if ok {
		s.log.Warn("request not served: node unavailable", "method", method, "principal", p.ID, "reason", reason, "error", err)
		s.metrics.unavailable(reason)
		return st
	}
	s.log.Warn("request refused", "method", method, "principal", p.ID, "error", err)
	s.auditAuthFailure(ctx, method, p, st, about...)
	return st
}
