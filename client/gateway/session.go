package gateway

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Session is a registry interaction session with a partner, for long
// exchanges: the gateway heartbeats it at a third of its TTL until Close,
// and it ends when the registry ends it (a revocation, suspension or
// agreement end cuts it). Send with SendOptions{SessionID: s.ID()}.
type Session struct {
	g      *Gateway
	id     string
	to     string
	cancel context.CancelFunc
	done   chan struct{} // closed when the heartbeats stop

	mu     sync.Mutex
	ended  chan struct{}
	reason string
}

// OpenSession opens a registry session with organisation to for action
// (the registry decides the interaction first) with ttl (0 = the
// registry's default, 5 minutes).
func (g *Gateway) OpenSession(ctx context.Context, to, action string, ttl time.Duration) (*Session, error) {
	req := &trustfedv1.OpenSessionRequest{FromOrganizationId: g.cfg.Organization, ToOrganizationId: to, Action: action}
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	var resp *trustfedv1.OpenSessionResponse
	err := g.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
		return client.RetryUnknown(ctx, func(ctx context.Context) error {
			var err error
			resp, err = c.Cascades().OpenSession(ctx, req)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("open session with %s: %w", to, err)
	}
	s := resp.GetSession()
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sess := &Session{g: g, id: s.GetId(), to: to, cancel: cancel, done: make(chan struct{}), ended: make(chan struct{})}
	g.sessions.add(sess)
	go sess.heartbeat(hctx, s.GetTtl().AsDuration())
	return sess, nil
}

// ID is the registry's session id.
func (s *Session) ID() string { return s.id }

// Ended is closed when the session has ended (closed, expired or cut).
func (s *Session) Ended() <-chan struct{} { return s.ended }

// Reason says why the session ended ("" while it is open).
func (s *Session) Reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

func (s *Session) end(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.ended:
	default:
		s.reason = reason
		close(s.ended)
	}
}

func (s *Session) heartbeat(ctx context.Context, ttl time.Duration) {
	defer close(s.done)
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ended:
			return
		case <-t.C:
		}
		req := &trustfedv1.HeartbeatSessionRequest{SessionId: s.id, OrganizationId: s.g.cfg.Organization}
		var resp *trustfedv1.HeartbeatSessionResponse
		err := s.g.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
			var err error
			resp, err = c.Cascades().HeartbeatSession(ctx, req)
			return err
		})
		switch {
		case err != nil && client.IsUnknownOutcome(err):
			s.g.log.Warn("session heartbeat failed; retrying", "session_id", s.id, "error", err)
		case err != nil:
			s.end(fmt.Sprintf("heartbeat refused: %v", err))
		case resp.GetSession().GetStatus() != trustfedv1.SessionStatus_SESSION_STATUS_OPEN:
			s.end(fmt.Sprintf("session %s: %s", resp.GetSession().GetStatus(), resp.GetSession().GetEndReason()))
		}
	}
}

// Close ends the session at the registry (if it is still open) and stops
// its heartbeats.
func (s *Session) Close(ctx context.Context, reason string) error {
	s.cancel()
	<-s.done
	s.g.sessions.remove(s)
	select {
	case <-s.ended:
		return nil
	default:
	}
	s.end("closed: " + reason)
	req := &trustfedv1.CloseSessionRequest{SessionId: s.id, OrganizationId: s.g.cfg.Organization, Reason: reason}
	err := s.g.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
		return client.RetryUnknown(ctx, func(ctx context.Context) error {
			_, err := c.Cascades().CloseSession(ctx, req)
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("close session %s: %w", s.id, err)
	}
	return nil
}

// sessionSet is the gateway's open sessions, ended by the events that cut
// them.
type sessionSet struct {
	mu sync.Mutex
	m  map[*Session]struct{}
}

func (ss *sessionSet) add(s *Session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.m == nil {
		ss.m = map[*Session]struct{}{}
	}
	ss.m[s] = struct{}{}
}

func (ss *sessionSet) remove(s *Session) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, s)
}

// event ends the sessions an event cuts: its own session, or any session
// with the organisation it is about when that organisation was revoked or
// suspended or an agreement of it ended.
func (ss *sessionSet) event(ev *trustfedv1.Event) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for s := range ss.m {
		switch {
		case ev.GetSessionId() != "" && ev.GetSessionId() == s.id,
			ev.GetKind() != trustfedv1.EventKind_EVENT_KIND_SESSION_END && ev.GetKind() != trustfedv1.EventKind_EVENT_KIND_LEVEL_CHANGE && ev.GetOrganizationId() == s.to:
			s.end(fmt.Sprintf("%s: %s", ev.GetKind(), ev.GetReason()))
		}
	}
}

// closeAll stops every session's heartbeats (Gateway.Close).
func (ss *sessionSet) closeAll() {
	ss.mu.Lock()
	all := make([]*Session, 0, len(ss.m))
	for s := range ss.m {
		all = append(all, s)
	}
	ss.m = nil
	ss.mu.Unlock()
	for _, s := range all {
		s.cancel()
		<-s.done
	}
}
