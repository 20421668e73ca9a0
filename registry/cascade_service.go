package registry

import (
	"context"
	"fmt"
	"strings"
	"time"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
)

// cascadeService implements trustfedv1.CascadeService on the shared core.
type cascadeService struct {
	trustfedv1.UnsafeCascadeServiceServer
	*Server
}

// AckSink takes a member's acknowledgement of an event on the leader; the
// revocation dispatcher commits acks through Raft in batches.
type AckSink interface {
	Ack(eventID, org string)
}

// watchRecheck bounds how long WatchEvents waits without looking at the
// state again (a snapshot restore swaps the store under the watch).
const watchRecheck = time.Second

// OpenSession opens a session after deciding the interaction is allowed.
func (s *cascadeService) OpenSession(ctx context.Context, req *trustfedv1.OpenSessionRequest) (*trustfedv1.OpenSessionResponse, error) {
	ttl, err := state.ValidateSessionTTL("ttl", req.GetTtl())
	if err != nil {
		return nil, err
	}
	check := &trustfedv1.CheckInteractionRequest{FromOrganizationId: req.GetFromOrganizationId(), ToOrganizationId: req.GetToOrganizationId(), Action: req.GetAction()}
	d, _, _, err := s.decide(ctx, check)
	if err != nil {
		return nil, err
	}
	if d.Decision != trustfedv1.Decision_DECISION_ALLOW {
		codes := make([]string, len(d.Reasons))
		for i, r := range d.Reasons {
			codes[i] = r.Code + ": " + r.Message
		}
		return nil, state.FailedPrecondition("action", "the interaction is not allowed: %s", strings.Join(codes, "; "))
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	cmd := &commandv1.OpenSession{SessionId: state.SessionID(rid), FromOrganizationId: req.FromOrganizationId, ToOrganizationId: req.ToOrganizationId,
		Action: req.Action, Ttl: durationpb.New(ttl)}
	if _, err := s.propose(ctx, cmd, rid); err != nil {
		return nil, err
	}
	got, err := s.appliedSession(cmd.SessionId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.OpenSessionResponse{Session: got}, nil
}

func (s *Server) appliedSession(id string) (*trustfedv1.Session, error) {
	return applied(s.store, "session", id, (*state.Reader).Session)
}

// HeartbeatSession extends an open session by its TTL.
func (s *cascadeService) HeartbeatSession(ctx context.Context, req *trustfedv1.HeartbeatSessionRequest) (*trustfedv1.HeartbeatSessionResponse, error) {
	if err := validateSessionParty(req.GetSessionId(), req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if err := s.proposeWithID(ctx, &commandv1.HeartbeatSession{SessionId: req.SessionId, OrganizationId: req.OrganizationId}, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedSession(req.SessionId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.HeartbeatSessionResponse{Session: got}, nil
}

// CloseSession ends a session; the other party is notified.
func (s *cascadeService) CloseSession(ctx context.Context, req *trustfedv1.CloseSessionRequest) (*trustfedv1.CloseSessionResponse, error) {
	if err := validateSessionParty(req.GetSessionId(), req.GetOrganizationId()); err != nil {
		return nil, err
	}
	if err := state.ValidateReason("reason", req.GetReason()); err != nil {
		return nil, err
	}
	cmd := &commandv1.CloseSession{SessionId: req.SessionId, OrganizationId: req.OrganizationId, Reason: req.Reason}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	got, err := s.appliedSession(req.SessionId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.CloseSessionResponse{Session: got}, nil
}

func validateSessionParty(session, org string) error {
	if err := state.ValidateSessionID("session_id", session); err != nil {
		return err
	}
	return state.ValidateOrganizationID("organization_id", org)
}

// GetSession returns a session.
func (s *cascadeService) GetSession(ctx context.Context, req *trustfedv1.GetSessionRequest) (*trustfedv1.GetSessionResponse, error) {
	got, _, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.Session]{
		field: "session_id", id: req.GetSessionId(), notFound: "session %s does not exist",
		validate: state.ValidateSessionID, lookup: (*state.Reader).Session})
	if err != nil {
		return nil, err
	}
	if err := scopeCheck(ctx, "session_id", got.FromOrganizationId, got.ToOrganizationId); err != nil {
		return nil, err
	}
	return &trustfedv1.GetSessionResponse{Session: got, Meta: meta}, nil
}

// GetOrganizationGraph returns an organisation's partners.
func (s *cascadeService) GetOrganizationGraph(ctx context.Context, req *trustfedv1.GetOrganizationGraphRequest) (*trustfedv1.GetOrganizationGraphResponse, error) {
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	if _, ok := r.Organization(req.OrganizationId); !ok {
		return nil, state.NotFound("organization_id", "organization %q does not exist", req.OrganizationId)
	}
	return &trustfedv1.GetOrganizationGraphResponse{OrganizationId: req.OrganizationId, Partners: r.Graph(req.OrganizationId), Meta: meta}, nil
}

// WatchEvents streams the events addressed to an organisation as this node
// applies them. It starts from a linearizable read, so a watcher that
// connects after an event was committed anywhere sees it.
func (s *cascadeService) WatchEvents(req *trustfedv1.WatchEventsRequest, stream grpc.ServerStreamingServer[trustfedv1.WatchEventsResponse]) error {
	ctx := stream.Context()
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return err
	}
	release, err := s.watchSlot(req.OrganizationId) // bounded streams per organisation (ratelimit.go)
	if err != nil {
		return err
	}
	defer release()
	r, _, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return err
	}
	if _, ok := r.Organization(req.OrganizationId); !ok {
		return state.NotFound("organization_id", "organization %q does not exist", req.OrganizationId)
	}
	// Headers now: the watcher knows its stream was admitted (Header returns).
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return fmt.Errorf("send headers: %w", err)
	}
	after := req.GetAfterIndex()
	tick := time.NewTicker(watchRecheck)
	defer tick.Stop()
	for {
		cascades, changed := s.store.Read().CascadesFor(req.OrganizationId, after)
		for _, c := range cascades {
			if err := stream.Send(&trustfedv1.WatchEventsResponse{Event: c.Event}); err != nil {
				return fmt.Errorf("send event %s: %w", c.Id, err)
			}
			after = c.CreateIndex
		}
		select {
		case <-ctx.Done():
			// DEADLINE_EXCEEDED or CANCELLED, not OK: a watcher whose
			// deadline passed must not read the end as a clean close (its
			// own deadline and the server's race).
			return ctx.Err()
		case <-changed:
		case <-tick.C:
		}
	}
}

// AckEvent takes an organisation's acknowledgement of an event. It runs on
// the leader (it is a write, forwarded there) and hands the ack to the
// dispatcher, which commits it with others in one Raft command.
func (s *cascadeService) AckEvent(ctx context.Context, req *trustfedv1.AckEventRequest) (*trustfedv1.AckEventResponse, error) {
	if err := state.ValidateEventID("event_id", req.GetEventId()); err != nil {
		return nil, err
	}
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return nil, err
	}
	r, _, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	c, ok := r.Cascade(req.EventId)
	if !ok {
		return nil, state.NotFound("event_id", "event %s does not exist", req.EventId)
	}
	if _, notified := state.FindDelivery(c, req.OrganizationId); !notified {
		return nil, state.Invalid("organization_id", "event %s is not addressed to %q", req.EventId, req.OrganizationId)
	}
	if s.cfg.Acks == nil {
		return nil, fmt.Errorf("this node has no dispatcher to take acknowledgements")
	}
	s.cfg.Acks.Ack(req.EventId, req.OrganizationId)
	return &trustfedv1.AckEventResponse{}, nil
}

// GetCascade shows a cascade with every partner's delivery.
func (s *cascadeService) GetCascade(ctx context.Context, req *trustfedv1.GetCascadeRequest) (*trustfedv1.GetCascadeResponse, error) {
	c, _, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.Cascade]{
		field: "cascade_id", id: req.GetCascadeId(), notFound: "cascade %s does not exist",
		validate: state.ValidateEventID, lookup: (*state.Reader).Cascade})
	if err != nil {
		return nil, err
	}
	if err := scopeCheck(ctx, "cascade_id", cascadeOrgs(c)...); err != nil {
		return nil, err
	}
	return &trustfedv1.GetCascadeResponse{Cascade: c, Meta: meta}, nil
}

// ListCascades lists cascades in id order, optionally about one organisation.
func (s *cascadeService) ListCascades(ctx context.Context, req *trustfedv1.ListCascadesRequest) (*trustfedv1.ListCascadesResponse, error) {
	after, err := pageStart(req.GetOrganizationId(), req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	cs, next := r.Cascades(req.GetOrganizationId(), after, pageSize(req.GetPageSize()))
	return &trustfedv1.ListCascadesResponse{Cascades: cs, NextPageToken: encodePageToken(next), Meta: meta}, nil
}

// cascadeOrgs are the organisations a cascade concerns: the one the event
// is about and every partner notified.
func cascadeOrgs(c *trustfedv1.Cascade) []string {
	orgs := []string{c.GetEvent().GetOrganizationId()}
	for _, d := range c.GetDeliveries() {
		orgs = append(orgs, d.GetOrganizationId())
	}
	return orgs
}
