package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Group commit of audit events (decisions, authentication failures): each
// check waits for its entry to be committed, but many checks share one Raft
// entry. There is no timer: the first event goes out at once, and whatever
// arrives while up to maxInFlight batches are being committed goes out in
// the next batch, so batches grow exactly as fast as load does.
const (
	maxAuditBatch       = 1024
	maxAuditInFlight    = 16
	auditQueueSize      = 16384
	authFailureQueueCap = 1024 // queued auth failures beyond this are counted and dropped
)

// errAuditQueueFull: the node cannot audit as fast as it decides.
var errAuditQueueFull = status.Error(codes.ResourceExhausted, "the audit log is saturated on this node: retry shortly")

type auditResult struct {
	seq uint64
	err error
}

type auditItem struct {
	ev   *commandv1.AuditEvent
	done chan auditResult // nil: fire and forget (auth failures)
}

// auditBatcher owns the goroutine that batches audit events; Run stops it.
type auditBatcher struct {
	commit func(ctx context.Context, evs []*commandv1.AuditEvent) (first uint64, err error)
	log    *slog.Logger
	queue  chan auditItem

	fireAndForget atomic.Int64 // auth failures queued
	dropped       atomic.Uint64
}

func newAuditBatcher(commit func(context.Context, []*commandv1.AuditEvent) (uint64, error), log *slog.Logger) *auditBatcher {
	return &auditBatcher{commit: commit, log: log, queue: make(chan auditItem, auditQueueSize)}
}

// Append queues ev and waits until it is committed; it returns the entry's
// sequence number in the audit log.
func (b *auditBatcher) Append(ctx context.Context, ev *commandv1.AuditEvent) (uint64, error) {
	done := make(chan auditResult, 1)
	select {
	case b.queue <- auditItem{ev: ev, done: done}:
	case <-ctx.Done():
		return 0, ctx.Err()
	default:
		return 0, errAuditQueueFull
	}
	select {
	case r := <-done:
		return r.seq, r.err
	case <-ctx.Done():
		// The entry may still be committed: the decision is not returned,
		// so the log holds at most a decision nobody acted on.
		return 0, ctx.Err()
	}
}

// Record queues ev without waiting (authentication failures: an attacker
// must not be able to slow the node down by failing to log in, so beyond a
// bound they are counted and dropped, with a warning).
func (b *auditBatcher) Record(ev *commandv1.AuditEvent) {
	if b.fireAndForget.Add(1) > authFailureQueueCap {
		b.fireAndForget.Add(-1)
		if n := b.dropped.Add(1); n&(n-1) == 0 {
			b.log.Warn("audit: authentication failures dropped (too many to log)", "dropped", n)
		}
		return
	}
	select {
	case b.queue <- auditItem{ev: ev}:
	default:
		b.fireAndForget.Add(-1)
		b.dropped.Add(1)
	}
}

// Run batches and commits until ctx ends; queued callers then get an error.
func (b *auditBatcher) Run(ctx context.Context) {
	sem := make(chan struct{}, maxAuditInFlight)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var first auditItem
		select {
		case first = <-b.queue:
		case <-ctx.Done():
			b.drain(ctx.Err())
			return
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			b.finish([]auditItem{first}, 0, ctx.Err())
			b.drain(ctx.Err())
			return
		}
		batch := []auditItem{first}
	fill:
		for len(batch) < maxAuditBatch {
			select {
			case it := <-b.queue:
				batch = append(batch, it)
			default:
				break fill
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			evs := make([]*commandv1.AuditEvent, len(batch))
			for i, it := range batch {
				evs[i] = it.ev
			}
			seq, err := b.commit(ctx, evs)
			if err != nil {
				b.log.Warn("audit: batch not committed", "events", len(evs), "error", err)
			}
			b.finish(batch, seq, err)
		}()
	}
}

func (b *auditBatcher) finish(batch []auditItem, first uint64, err error) {
	for i, it := range batch {
		if it.done == nil {
			b.fireAndForget.Add(-1)
			continue
		}
		if err != nil {
			it.done <- auditResult{err: err}
		} else {
			it.done <- auditResult{seq: first + uint64(i)}
		}
	}
}

func (b *auditBatcher) drain(err error) {
	for {
		select {
		case it := <-b.queue:
			b.finish([]auditItem{it}, 0, err)
		default:
			return
		}
	}
}

// commitAudit commits audit events: through Raft on the leader, through the
// leader's PeerService.AppendAudit on a follower.
func (s *Server) commitAudit(ctx context.Context, evs []*commandv1.AuditEvent) (uint64, error) {
	if s.raft.IsLeader() {
		res, err := s.proposeResult(ctx, &commandv1.AppendAudit{Events: evs}, "")
		if err != nil {
			return 0, err
		}
		return res.AuditSequence, nil
	}
	l, ok := s.raft.Leader()
	if !ok || l.APIAddr == "" {
		return 0, fmt.Errorf("audit: %w", consensus.ErrNoLeader)
	}
	c, err := s.cfg.Peers.conn(l.APIAddr)
	if err != nil {
		return 0, err
	}
	// Bounded: a hung connection to the leader must not hold a batch slot
	// (and the decisions waiting in it) for ever.
	ctx, cancel := context.WithTimeout(ctx, peerCallTimeout)
	defer cancel()
	resp, err := peerv1.NewPeerServiceClient(c).AppendAudit(ctx, &peerv1.AppendAuditRequest{Audit: &commandv1.AppendAudit{Events: evs}})
	if err != nil {
		return 0, fmt.Errorf("audit through leader %s: %w", l.ID, err)
	}
	return resp.FirstSequence, nil
}

// AppendAudit serves followers' audit batches on the leader.
func (s *Server) AppendAudit(ctx context.Context, req *peerv1.AppendAuditRequest) (*peerv1.AppendAuditResponse, error) {
	if len(req.GetAudit().GetEvents()) == 0 {
		return nil, errors.New("audit: no events") // a peer bug, never user input
	}
	if len(req.Audit.Events) > maxAuditBatch {
		return nil, fmt.Errorf("audit: %d events in one batch, at most %d", len(req.Audit.Events), maxAuditBatch)
	}
	res, err := s.proposeResult(ctx, req.Audit, "")
	if err != nil {
		return nil, err
	}
	return &peerv1.AppendAuditResponse{FirstSequence: res.AuditSequence, Index: res.Index}, nil
}

// auditAuthFailure records a refused call in the audit log (best effort,
// never waited on).
func (s *Server) auditAuthFailure(ctx context.Context, method string, p Principal, st error) {
	if s.audit == nil {
		return
	}
	af := &trustfedv1.AuditAuthFailure{Method: method, NodeId: s.cfg.NodeID, Identity: p.ID}
	if gs, ok := status.FromError(st); ok {
		af.Code, af.Reason = gs.Code().String(), gs.Message()
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		af.Peer = pr.Addr.String()
	}
	s.batcher.Record(&commandv1.AuditEvent{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: af}, Principal: p.ID})
}
