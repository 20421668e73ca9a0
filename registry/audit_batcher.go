package registry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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
// arrives while a batch is being committed goes out in the next batch, so
// batches grow exactly as fast as load does. One batch is in flight at a
// time: more only made more, smaller Raft entries, each with its own apply
// overhead, and fewer checks per second (BENCHMARKS.md, 1 vs 2 vs 16).
const (
	maxAuditBatch       = 1024
	maxAuditInFlight    = 1
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
	ev *commandv1.AuditEvent
	// term, when not 0, is the term in which this node led when the
	// decision read its state without a read-index round: the entry only
	// proves that read fresh if this node commits it in that term.
	term uint64
	done chan auditResult // nil: fire and forget (auth failures)
}

// errLeadershipMoved: a decision read as leader of a term whose audit entry
// was not committed in that term by this node (leadership changed in
// between): the read proves nothing, so the decision is not answered.
var errLeadershipMoved = status.Error(codes.Unavailable, "leadership changed while the decision was made: retry")

// errAuditBatchApplied: an attempt to commit an audit batch found it
// already appended by an earlier attempt whose answer was lost (the leader
// changed under it). The entries are in the log once; their sequence
// numbers are not known here, so the calls waiting for them retry.
var errAuditBatchApplied = status.Error(codes.Unavailable, "the audit entry of this call was committed by an earlier attempt whose answer was lost when the leader changed: retry")

// auditBatcher owns the goroutine that batches audit events; Run stops it.
type auditBatcher struct {
	// commit commits events and returns the sequence of the first and the
	// Raft term this node committed them in (0 if it did not commit them
	// as leader).
	commit func(ctx context.Context, evs []*commandv1.AuditEvent) (first, term uint64, err error)
	// observe, if set, is told each batch's size, commit time and outcome
	// (metrics).
	observe func(events int, took time.Duration, err error)
	log     *slog.Logger
	queue   chan auditItem

	fireAndForget atomic.Int64 // auth failures queued
	dropped       atomic.Uint64
}

func newAuditBatcher(commit func(context.Context, []*commandv1.AuditEvent) (uint64, uint64, error), log *slog.Logger) *auditBatcher {
	return &auditBatcher{commit: commit, log: log, queue: make(chan auditItem, auditQueueSize)}
}

// Append queues ev and waits until it is committed; it returns the entry's
// sequence number in the audit log. With term not 0, it succeeds only if
// this node committed the entry as leader of that term (errLeadershipMoved
// otherwise).
func (b *auditBatcher) Append(ctx context.Context, term uint64, ev *commandv1.AuditEvent) (uint64, error) {
	done := make(chan auditResult, 1)
	select {
	case b.queue <- auditItem{ev: ev, term: term, done: done}:
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
			b.finish([]auditItem{first}, 0, 0, ctx.Err())
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
			start := time.Now()
			seq, term, err := b.commit(ctx, evs)
			if b.observe != nil {
				b.observe(len(evs), time.Since(start), err)
			}
			if err != nil {
				b.log.Warn("audit: batch not committed", "events", len(evs), "error", err)
			}
			b.finish(batch, seq, term, err)
		}()
	}
}

func (b *auditBatcher) finish(batch []auditItem, first, term uint64, err error) {
	for i, it := range batch {
		switch {
		case it.done == nil:
			b.fireAndForget.Add(-1)
		case err != nil:
			it.done <- auditResult{err: err}
		case it.term != 0 && it.term != term:
			it.done <- auditResult{err: errLeadershipMoved}
		default:
			it.done <- auditResult{seq: first + uint64(i)}
		}
	}
}

func (b *auditBatcher) drain(err error) {
	for {
		select {
		case it := <-b.queue:
			b.finish([]auditItem{it}, 0, 0, err)
		default:
			return
		}
	}
}

// Retrying an audit batch: between attempts the batch waits for the leader
// to change (or for the backoff), for at most auditRetryWindow in all.
const (
	auditRetryMinBackoff = 25 * time.Millisecond
	auditRetryMaxBackoff = 200 * time.Millisecond
	auditRetryWindow     = 30 * time.Second
)

// commitAudit commits audit events: through Raft on the leader, through the
// leader's PeerService.AppendAudit on a follower. A call to the leader is
// abandoned as soon as the leader changes, or after the leader-call bound
// (consensus.Node.LeaderCall); the batch is then sent again, under the same
// batch id, to whoever leads now (this node included), so a leader cut off
// by a partition never holds the audit pipeline, and the state machine
// appends the batch once however many attempts reach it.
func (s *Server) commitAudit(ctx context.Context, evs []*commandv1.AuditEvent) (first, term uint64, err error) {
	batchID, err := requestID("")
	if err != nil {
		return 0, 0, err
	}
	batch := &commandv1.AppendAudit{Events: evs, NodeId: s.cfg.NodeID, BatchId: batchID}
	deadline := time.Now().Add(auditRetryWindow)
	backoff := auditRetryMinBackoff
	for {
		leader, first, term, err := s.commitAuditOnce(ctx, batch)
		reason, retry := unavailableReason(err)
		if err == nil || !retry || ctx.Err() != nil || time.Now().After(deadline) {
			return first, term, err
		}
		s.log.Info("audit: batch not committed; sending it again to the current leader", "events", len(evs), "batch", batchID, "reason", reason, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-s.raft.LeaderChanged(leader):
			backoff = auditRetryMinBackoff
		case <-t.C:
			backoff = min(2*backoff, auditRetryMaxBackoff)
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// commitAuditOnce is one attempt of commitAudit; it returns the leader it
// tried ("" if none was known).
func (s *Server) commitAuditOnce(ctx context.Context, batch *commandv1.AppendAudit) (leader string, first, term uint64, err error) {
	if s.raft.IsLeader() {
		res, term, err := s.proposeInTerm(ctx, batch, "")
		switch {
		case err != nil:
			return s.cfg.NodeID, 0, 0, err
		case res.Duplicate:
			return s.cfg.NodeID, 0, 0, errAuditBatchApplied
		}
		return s.cfg.NodeID, res.AuditSequence, term, nil
	}
	l, ok := s.raft.Leader()
	if !ok || l.APIAddr == "" || l.ID == s.cfg.NodeID { // none, or this node before its barrier
		return l.ID, 0, 0, fmt.Errorf("audit: %w", consensus.ErrNoLeader)
	}
	c, err := s.cfg.Peers.conn(l.APIAddr)
	if err != nil {
		return l.ID, 0, 0, err
	}
	cctx, cancel := s.raft.LeaderCall(ctx, l.ID)
	defer cancel()
	resp, err := peerv1.NewPeerServiceClient(c).AppendAudit(cctx, &peerv1.AppendAuditRequest{Audit: batch})
	if err = consensus.CallErr(ctx, cctx, err); err != nil {
		switch status.Code(err) {
		case codes.Unavailable: // the leader's own "no ready leader", or no connection
			err = fmt.Errorf("%w: %w", consensus.ErrNoLeader, err)
		case codes.AlreadyExists:
			return l.ID, 0, 0, errAuditBatchApplied
		}
		return l.ID, 0, 0, fmt.Errorf("audit through leader %s: %w", l.ID, err)
	}
	return l.ID, resp.FirstSequence, 0, nil
}

// auditAuthFailure records a refused call in the audit log (best effort,
// never waited on), under the caller's organisation (from its verified
// credential) and the organisations the request named (about).
func (s *Server) auditAuthFailure(ctx context.Context, method string, p Principal, st error, about ...string) {
	s.metrics.refused(st)
	if s.audit == nil {
		return
	}
	// The state machine keeps the well-formed ids, once each.
	af := &trustfedv1.AuditAuthFailure{Method: method, NodeId: s.cfg.NodeID, Identity: p.ID, OrganizationIds: about}
	if p.Organization != "" {
		af.OrganizationIds = append([]string{p.Organization}, about...)
	}
	if gs, ok := status.FromError(st); ok {
		af.Code, af.Reason = gs.Code().String(), gs.Message()
	}
	if pr, ok := peer.FromContext(ctx); ok && pr.Addr != nil {
		af.Peer = pr.Addr.String()
	}
	s.batcher.Record(&commandv1.AuditEvent{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: af}, Principal: p.ID})
}
