package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// index is the Raft index of the entry; leafOffset the leaf of a
	// merged part's first decision in the entry's batch head (parts only).
	index, leafOffset uint64
	// quorum (parts only, nil if none was gathered): the batch head of
	// the entry and the signatures over it, from a certificate of one of
	// the part's decisions.
	quorum *trustfedv1.DecisionCertificate
	// cert is the decision's quorum certificate; certErr why there is
	// none (a decision signed by its node alone needs none).
	cert    *trustfedv1.DecisionCertificate
	certErr error
}

// auditCommit is where a batch was committed: the sequence of its first
// entry, the Raft index of its APPEND_AUDIT entry, and the term this node
// committed it in as leader (0 if it did not). merged: the leader merged
// it into an entry with other servers' batches, where its first decision
// is the leaf leafOffset of the entry's batch head. partsErr (the leader's
// own batches only): why the followers' batches merged into it were not
// committed with it (the leader's own events then went alone).
type auditCommit struct {
	first, index, term uint64
	merged             bool
	leafOffset         uint64
	partsErr           error
	// head and sigs (merged batches): the quorum the leader gathered over
	// the entry, which the follower checks before it uses it.
	head []byte
	sigs []*trustfedv1.BatchSignature
}

type auditItem struct {
	ev *commandv1.AuditEvent
	// part, instead of ev: a follower's batch (its first attempt) the
	// leader merges into its own entry (AppendPart).
	part *commandv1.AppendAudit
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
	commit func(ctx context.Context, evs []*commandv1.AuditEvent) (auditCommit, error)
	// commitMerged commits this node's events with followers' batches
	// (parts) merged into the same entry; needed only for AppendPart.
	commitMerged func(ctx context.Context, evs []*commandv1.AuditEvent, parts []*commandv1.AppendAudit) (auditCommit, error)
	// certify, if set, gathers the quorum certificates of a committed
	// batch's decisions (certify.go), one per event (nil for others). evs
	// are all the events of the entry (merged parts included) when the
	// commit is not merged, this node's alone when it is.
	certify func(ctx context.Context, c auditCommit, evs []*commandv1.AuditEvent) ([]*trustfedv1.DecisionCertificate, error)
	// observe, if set, is told each batch's size, commit time and outcome
	// (metrics).
	observe func(events int, took time.Duration, err error)
	log     *slog.Logger
	queue   chan auditItem

	fireAndForget atomic.Int64 // auth failures queued
	dropped       atomic.Uint64
}

func newAuditBatcher(commit func(context.Context, []*commandv1.AuditEvent) (auditCommit, error), log *slog.Logger) *auditBatcher {
	return &auditBatcher{commit: commit, log: log, queue: make(chan auditItem, auditQueueSize)}
}

// Append queues ev and waits until it is committed (and, for a decision,
// certified: see auditResult); it returns the entry's sequence number in
// the audit log. With term not 0, it succeeds only if this node committed
// the entry as leader of that term (errLeadershipMoved otherwise).
func (b *auditBatcher) Append(ctx context.Context, term uint64, ev *commandv1.AuditEvent) (auditResult, error) {
	done := make(chan auditResult, 1)
	select {
	case b.queue <- auditItem{ev: ev, term: term, done: done}:
	case <-ctx.Done():
		return auditResult{}, ctx.Err()
	default:
		return auditResult{}, errAuditQueueFull
	}
	select {
	case r := <-done:
		return r, r.err
	case <-ctx.Done():
		// The entry may still be committed: the decision is not returned,
		// so the log holds at most a decision nobody acted on.
		return auditResult{}, ctx.Err()
	}
}

// AppendPart queues a follower's batch (its first attempt) to be merged
// into this leader's next entry, and waits until that entry is committed:
// the result's seq is the sequence of the batch's first event, index the
// entry's, leafOffset the leaf of its first decision in the entry's batch
// head. The follower certifies its decisions itself.
func (b *auditBatcher) AppendPart(ctx context.Context, part *commandv1.AppendAudit) (auditResult, error) {
	done := make(chan auditResult, 1)
	select {
	case b.queue <- auditItem{part: part, done: done}:
	case <-ctx.Done():
		return auditResult{}, ctx.Err()
	default:
		return auditResult{}, errAuditQueueFull
	}
	select {
	case r := <-done:
		return r, r.err
	case <-ctx.Done():
		return auditResult{}, ctx.Err()
	}
}

// events is how many audit events the item carries.
func (it auditItem) events() int {
	if it.part != nil {
		return len(it.part.Events)
	}
	return 1
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
			b.finish([]auditItem{first}, auditCommit{}, nil, nil, ctx.Err())
			b.drain(ctx.Err())
			return
		}
		batch := []auditItem{first}
		n := first.events()
	fill:
		for n < maxAuditBatch { // a part is taken whole
			select {
			case it := <-b.queue:
				batch = append(batch, it)
				n += it.events()
			default:
				break fill
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// This node's events first, in order, then the merged parts.
			var evs []*commandv1.AuditEvent
			var parts []*commandv1.AppendAudit
			var own []auditItem
			for _, it := range batch {
				if it.part != nil {
					parts = append(parts, it.part)
					continue
				}
				own = append(own, it)
				evs = append(evs, it.ev)
			}
			start := time.Now()
			var c auditCommit
			var err error
			if len(parts) > 0 && b.commitMerged != nil {
				c, err = b.commitMerged(ctx, evs, parts)
			} else if len(parts) > 0 {
				c.partsErr = errLeadershipMoved
				if len(evs) > 0 {
					c, err = b.commit(ctx, evs)
					c.partsErr = errLeadershipMoved
				}
			} else {
				c, err = b.commit(ctx, evs)
			}
			<-sem // the next batch may commit while this one is certified
			if b.observe != nil {
				b.observe(n, time.Since(start), err)
			}
			if err != nil {
				b.log.Warn("audit: batch not committed", "events", n, "error", err)
			}
			merged := len(parts) > 0 && err == nil && c.partsErr == nil
			all := evs
			if merged {
				all = entryEvents(evs, parts) // the head is the whole entry's
			}
			var certs []*trustfedv1.DecisionCertificate
			var certErr error
			// The entry is certified once, here, for this node's decisions
			// and the merged parts' alike: each follower gets the quorum with
			// its answer and need not gather its own.
			if err == nil && len(all) > 0 && b.certify != nil && needsCertificates(all) {
				if certs, certErr = b.certify(ctx, c, all); certErr != nil {
					b.log.Warn("audit: decision batch not certified", "index", c.index, "events", len(all), "error", certErr)
				}
			}
			b.finishParts(batch, evs, c, certs, err)
			b.finish(own, c, certs, certErr, err)
		}()
	}
}

// entryEvents are the events of an entry: this node's, then each part's.
func entryEvents(evs []*commandv1.AuditEvent, parts []*commandv1.AppendAudit) []*commandv1.AuditEvent {
	all := slices.Clone(evs)
	for _, p := range parts {
		all = append(all, p.Events...)
	}
	return all
}

// finishParts answers the merged parts of batch (whose own events are
// evs): where each part's events and decisions start in the entry, or
// why they were not committed.
func (b *auditBatcher) finishParts(batch []auditItem, evs []*commandv1.AuditEvent, c auditCommit, certs []*trustfedv1.DecisionCertificate, err error) {
	if err != nil || c.partsErr != nil {
		// Not known to be committed: each follower sends its batch again,
		// alone, under its batch id (appended once however it went).
		err = errMergeFailed
	}
	seq, leaf := c.first+uint64(len(evs)), uint64(decisions(evs))
	at := len(evs) // the part's first event among the entry's (and certs)
	for _, it := range batch {
		if it.part == nil {
			continue
		}
		if err != nil {
			it.done <- auditResult{err: err}
			continue
		}
		r := auditResult{seq: seq, index: c.index, leafOffset: leaf}
		for i := at; i < at+len(it.part.Events) && i < len(certs); i++ {
			if certs[i] != nil {
				r.quorum = certs[i]
				break
			}
		}
		it.done <- r
		seq += uint64(len(it.part.Events))
		leaf += uint64(decisions(it.part.Events))
		at += len(it.part.Events)
	}
}

// decisions counts the decision events among evs (the leaves of a batch
// head).
func decisions(evs []*commandv1.AuditEvent) int {
	n := 0
	for _, ev := range evs {
		if ev.GetDecision() != nil {
			n++
		}
	}
	return n
}

func (b *auditBatcher) finish(batch []auditItem, c auditCommit, certs []*trustfedv1.DecisionCertificate, certErr, err error) {
	for i, it := range batch {
		switch {
		case it.done == nil:
			b.fireAndForget.Add(-1)
		case err != nil:
			it.done <- auditResult{err: err}
		case it.term != 0 && it.term != c.term:
			it.done <- auditResult{err: errLeadershipMoved}
		default:
			r := auditResult{seq: c.first + uint64(i), certErr: certErr}
			if i < len(certs) {
				r.cert = certs[i]
			}
			it.done <- r
		}
	}
}

// needsCertificates: evs hold a decision signed by no node on its own
// (made to be quorum-certified).
func needsCertificates(evs []*commandv1.AuditEvent) bool {
	for _, ev := range evs {
		if d := ev.GetDecision(); d != nil && len(d.Signature) == 0 {
			return true
		}
	}
	return false
}

func (b *auditBatcher) drain(err error) {
	for {
		select {
		case it := <-b.queue:
			b.finish([]auditItem{it}, auditCommit{}, nil, nil, err)
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

// commitAudit commits audit events: through Raft on the leader, over this
// follower's PeerService.AppendAuditStream to the leader on a follower
// (audit_stream.go; one AppendAudit call per batch to a leader without it). A call to the leader is
// abandoned as soon as the leader changes, or after the leader-call bound
// (consensus.Node.LeaderCall); the batch is then sent again, under the same
// batch id, to whoever leads now (this node included), so a leader cut off
// by a partition never holds the audit pipeline, and the state machine
// appends the batch once however many attempts reach it.
func (s *Server) commitAudit(ctx context.Context, evs []*commandv1.AuditEvent) (auditCommit, error) {
	batchID, err := requestID("")
	if err != nil {
		return auditCommit{}, err
	}
	return s.commitAuditBatch(ctx, &commandv1.AppendAudit{Events: evs, NodeId: s.cfg.NodeID, BatchId: batchID}, true)
}

// errMergeFailed: the leader could not commit the entry it merged a
// follower's batch into; the follower sends it again, alone.
var errMergeFailed = status.Error(codes.Unavailable, "the leader did not commit the entry it merged this batch into: send it again")

// commitMergedAudit is commitAudit on the leader for its own events evs
// with followers' batches (their first attempts) merged into the same
// Raft entry: one entry, one apply, one cosigning round for all of them,
// instead of one per batch. Only this node, while it leads, proposes the
// merged entry, once: if it fails, the parts get errMergeFailed (each
// follower sends its batch again under its batch id, and the state
// machine, which remembers the parts' batch ids, appends it once) and evs
// are committed alone under the entry's batch id (appended once too).
func (s *Server) commitMergedAudit(ctx context.Context, evs []*commandv1.AuditEvent, parts []*commandv1.AppendAudit) (auditCommit, error) {
	batchID, err := requestID("")
	if err != nil {
		return auditCommit{}, err
	}
	if s.raft.IsLeader() {
		merged := &commandv1.AppendAudit{Events: entryEvents(evs, parts), NodeId: s.cfg.NodeID, BatchId: batchID}
		for _, p := range parts {
			merged.Parts = append(merged.Parts, &commandv1.AuditPart{NodeId: p.NodeId, BatchId: p.BatchId, Events: uint32(len(p.Events))})
		}
		res, term, err := s.proposeInTerm(ctx, merged, "")
		if err == nil && !res.Duplicate {
			return auditCommit{first: res.AuditSequence, index: res.Index, term: term}, nil
		}
		s.log.Info("audit: merged batch not committed; its parts go back to their servers", "events", len(merged.Events), "parts", len(parts), "batch", batchID, "error", err)
	}
	if len(evs) == 0 {
		return auditCommit{partsErr: errMergeFailed}, nil
	}
	c, err := s.commitAuditBatch(ctx, &commandv1.AppendAudit{Events: evs, NodeId: s.cfg.NodeID, BatchId: batchID}, false)
	c.partsErr = errMergeFailed
	return c, err
}

// commitAuditBatch commits batch, trying again as commitAudit says;
// mergeable: this is the batch's first attempt.
func (s *Server) commitAuditBatch(ctx context.Context, batch *commandv1.AppendAudit, mergeable bool) (auditCommit, error) {
	evs, batchID := batch.Events, batch.BatchId
	deadline := time.Now().Add(auditRetryWindow)
	backoff := auditRetryMinBackoff
	for {
		leader, c, err := s.commitAuditOnce(ctx, batch, mergeable)
		mergeable = false
		reason, retry := unavailableReason(err)
		if err == nil || !retry || ctx.Err() != nil || time.Now().After(deadline) {
			return c, err
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
func (s *Server) commitAuditOnce(ctx context.Context, batch *commandv1.AppendAudit, mergeable bool) (leader string, _ auditCommit, err error) {
	if s.raft.IsLeader() {
		res, term, err := s.proposeInTerm(ctx, batch, "")
		switch {
		case err != nil:
			return s.cfg.NodeID, auditCommit{}, err
		case res.Duplicate:
			return s.cfg.NodeID, auditCommit{}, errAuditBatchApplied
		}
		return s.cfg.NodeID, auditCommit{first: res.AuditSequence, index: res.Index, term: term}, nil
	}
	l, ok := s.raft.Leader()
	if !ok || l.APIAddr == "" || l.ID == s.cfg.NodeID { // none, or this node before its barrier
		return l.ID, auditCommit{}, fmt.Errorf("audit: %w", consensus.ErrNoLeader)
	}
	c, err := s.auditStreams.append(ctx, l, batch, mergeable)
	if errors.Is(err, errAuditStreamUnsupported) {
		c, err = s.appendAuditUnary(ctx, l, batch)
	}
	return l.ID, c, err
}

// appendAuditUnary sends batch to leader l with one AppendAudit call (a
// leader that does not serve AppendAuditStream).
func (s *Server) appendAuditUnary(ctx context.Context, l consensus.Server, batch *commandv1.AppendAudit) (auditCommit, error) {
	c, err := s.cfg.Peers.conn(l.APIAddr)
	if err != nil {
		return auditCommit{}, err
	}
	cctx, cancel := s.raft.LeaderCall(ctx, l.ID)
	defer cancel()
	resp, err := peerv1.NewPeerServiceClient(c).AppendAudit(cctx, &peerv1.AppendAuditRequest{Audit: batch})
	if err = consensus.CallErr(ctx, cctx, err); err != nil {
		return auditCommit{}, leaderAuditErr(l.ID, err)
	}
	return auditCommit{first: resp.FirstSequence, index: resp.Index}, nil
}

// leaderAuditErr is the error of a batch the leader did not append, from
// its status (a unary call's or a stream answer's): already appended by an
// earlier attempt (errAuditBatchApplied), no leader to take it (the
// leader's own "not the leader any more", or no connection), or another.
func leaderAuditErr(leader string, err error) error {
	switch status.Code(err) {
	case codes.AlreadyExists:
		return errAuditBatchApplied
	case codes.Unavailable:
		err = fmt.Errorf("%w: %w", consensus.ErrNoLeader, err)
	}
	return fmt.Errorf("audit through leader %s: %w", leader, err)
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
