package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A follower's audit batches travel to the leader over one long-lived
// PeerService.AppendAuditStream per leader instead of one AppendAudit call
// each: a batch is one message on the stream, its answer one message back,
// matched by batch id. The stream is opened on the first batch for a
// leader and closed as soon as this node sees another leader (or none),
// when a batch's answer does not come within the leader-call bound, or
// when the server stops. A batch whose answer is lost with its stream is
// sent again by commitAudit under the same batch id — to the new leader,
// or this node when it leads — and the state machine appends it once.

// auditStreamInFlight bounds the batches of one follower's stream the
// leader commits at once (a follower keeps maxAuditInFlight out).
const auditStreamInFlight = 8

// errAuditStreamUnsupported: the leader does not serve AppendAuditStream
// (an older server during a rolling upgrade): use AppendAudit.
var errAuditStreamUnsupported = errors.New("the leader does not serve AppendAuditStream")

// auditStreams holds this node's stream to the current leader.
type auditStreams struct {
	peers *Peers
	raft  Raft
	log   *slog.Logger

	mu     sync.Mutex
	cur    *auditStream
	closed bool
	// unary: leaders (by id) that answered Unimplemented.
	unary map[string]bool

	// merging: servers (by id) that sent this node a batch marked
	// mergeable, so run a version whose state machine applies merged
	// entries (AppendAudit.parts) the same way (mergeAllowed).
	mergingMu sync.Mutex
	merging   map[string]bool
}

// sawMergeable records that server id sent a batch marked mergeable.
func (a *auditStreams) sawMergeable(id string) {
	a.mergingMu.Lock()
	defer a.mergingMu.Unlock()
	a.merging[id] = true
}

// mergeAllowed: every other server of the configuration has shown (by
// sending a mergeable batch) that it applies merged entries. An older
// server would apply one without remembering its parts' batch ids: its
// state, and so its commitment, would differ from the others'. Until
// then, in a rolling upgrade or while a server sends no batch, each
// batch is an entry of its own, as before.
func (a *auditStreams) mergeAllowed(self string, servers []consensus.Server) bool {
	if len(servers) == 0 {
		return false
	}
	a.mergingMu.Lock()
	defer a.mergingMu.Unlock()
	for _, srv := range servers {
		if srv.ID != self && !a.merging[srv.ID] {
			return false
		}
	}
	return true
}

// auditStream is one stream to one leader; its receiver goroutine ends
// with the stream, which cancel ends.
type auditStream struct {
	leader string
	stream peerv1.PeerService_AppendAuditStreamClient
	cancel context.CancelCauseFunc

	sendMu sync.Mutex

	mu      sync.Mutex
	pending map[string]chan *peerv1.AppendAuditStreamResponse
	done    chan struct{} // closed when the stream ended; err says why
	err     error
}

func newAuditStreams(peers *Peers, raft Raft, log *slog.Logger) *auditStreams {
	return &auditStreams{peers: peers, raft: raft, log: log, unary: map[string]bool{}, merging: map[string]bool{}}
}

// append sends batch to leader l over the stream and waits for its
// answer, at most the leader-call bound and never past a leader change.
// A stream it opens lives as long as ctx: the audit batcher's, which ends
// when the server stops.
// errAuditStreamUnsupported when the leader serves only AppendAudit.
func (a *auditStreams) append(ctx context.Context, l consensus.Server, batch *commandv1.AppendAudit, mergeable bool) (auditCommit, error) {
	st, err := a.open(ctx, l)
	if err != nil {
		return auditCommit{}, err
	}
	answer := make(chan *peerv1.AppendAuditStreamResponse, 1)
	if err := st.register(batch.BatchId, answer); err != nil {
		return auditCommit{}, a.failed(l, st, err)
	}
	defer st.unregister(batch.BatchId)
	cctx, cancel := a.raft.LeaderCall(ctx, l.ID)
	defer cancel()
	st.sendMu.Lock()
	err = st.stream.Send(&peerv1.AppendAuditStreamRequest{Audit: batch, Mergeable: mergeable})
	st.sendMu.Unlock()
	if errors.Is(err, io.EOF) {
		// The leader ended the stream; its status (Unimplemented from an
		// older server, or why it ended) is what the receiver reads.
		return auditCommit{}, a.failed(l, st, nil)
	}
	if err != nil {
		a.close(st, fmt.Errorf("send: %w", err))
		return auditCommit{}, a.failed(l, st, err)
	}
	select {
	case r := <-answer:
		return streamAnswer(l.ID, r)
	case <-st.done:
		return auditCommit{}, a.failed(l, st, nil)
	case <-cctx.Done():
		if ctx.Err() != nil {
			return auditCommit{}, ctx.Err()
		}
		// The leader changed, or did not answer in time: this stream is
		// not used again; the batch goes again to whoever leads.
		cause := context.Cause(cctx)
		a.close(st, cause)
		return auditCommit{}, fmt.Errorf("audit through leader %s: %w", l.ID, cause)
	}
}

// streamAnswer turns the leader's answer to one batch into its commit.
func streamAnswer(leader string, r *peerv1.AppendAuditStreamResponse) (auditCommit, error) {
	if codes.Code(r.Code) == codes.OK {
		return auditCommit{first: r.FirstSequence, index: r.Index, merged: r.Merged, leafOffset: r.LeafOffset, head: r.BatchHead, sigs: r.Signatures}, nil
	}
	return auditCommit{}, leaderAuditErr(leader, status.Error(codes.Code(r.Code), r.Message))
}

// failed is the error of a batch whose stream ended (err: the send's
// error, nil to take the stream's): retried by commitAudit like a lost
// leader, or errAuditStreamUnsupported.
func (a *auditStreams) failed(l consensus.Server, st *auditStream, err error) error {
	if err == nil {
		<-st.done
		err = st.err
	}
	if status.Code(err) == codes.Unimplemented {
		a.mu.Lock()
		a.unary[l.ID] = true
		a.mu.Unlock()
		return errAuditStreamUnsupported
	}
	if unavailable, _ := unavailableReason(err); unavailable != "" {
		return fmt.Errorf("audit stream to leader %s: %w", l.ID, err)
	}
	return fmt.Errorf("audit stream to leader %s: %w: %w", l.ID, consensus.ErrNoLeader, err)
}

// open returns the live stream to l, opening one under ctx (and closing
// the stream to a former leader) if needed.
func (a *auditStreams) open(ctx context.Context, l consensus.Server) (*auditStream, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.closed:
		return nil, fmt.Errorf("audit stream: %w", consensus.ErrClosed)
	case a.unary[l.ID]:
		return nil, errAuditStreamUnsupported
	}
	if st := a.cur; st != nil {
		select {
		case <-st.done:
		default:
			if st.leader == l.ID {
				return st, nil
			}
			st.cancel(fmt.Errorf("%w: %s is no longer the leader", consensus.ErrLeaderChanged, st.leader))
		}
	}
	conn, err := a.peers.conn(l.APIAddr)
	if err != nil {
		return nil, fmt.Errorf("audit stream: %w: %w", consensus.ErrNoLeader, err)
	}
	// The stream lives as long as ctx (the audit batcher's: the server's
	// life) and the leadership of l, whichever ends first; a leader change
	// also abandons the opening itself.
	ctx, cancel := context.WithCancelCause(ctx)
	changed := a.raft.LeaderChanged(l.ID)
	go func() { // ends with the stream's context
		select {
		case <-changed:
			cancel(fmt.Errorf("%w: %s is no longer the leader this node knows", consensus.ErrLeaderChanged, l.ID))
		case <-ctx.Done():
		}
	}()
	stream, err := peerv1.NewPeerServiceClient(conn).AppendAuditStream(ctx)
	if err != nil {
		cancel(err)
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, err) {
			err = cause
		}
		return nil, fmt.Errorf("open the audit stream to leader %s: %w: %w", l.ID, consensus.ErrNoLeader, err)
	}
	st := &auditStream{leader: l.ID, stream: stream, cancel: cancel,
		pending: map[string]chan *peerv1.AppendAuditStreamResponse{}, done: make(chan struct{})}
	go st.receive(ctx, a.log) // ends with the stream
	a.cur = st
	a.log.Debug("audit stream opened", "leader", l.ID)
	return st, nil
}

// close ends st with cause (its receiver then fails what is pending).
func (a *auditStreams) close(st *auditStream, cause error) {
	st.cancel(cause)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == st {
		a.cur = nil
	}
}

// Close ends the stream and refuses new batches (the server stops).
func (a *auditStreams) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	if a.cur != nil {
		a.cur.cancel(fmt.Errorf("audit stream: %w", consensus.ErrClosed))
		<-a.cur.done
		a.cur = nil
	}
}

// receive hands each answer to the batch waiting for it until the stream
// ends, then records why it ended and closes done.
func (st *auditStream) receive(ctx context.Context, log *slog.Logger) {
	var err error
	for {
		var r *peerv1.AppendAuditStreamResponse
		if r, err = st.stream.Recv(); err != nil {
			break
		}
		st.mu.Lock()
		ch, ok := st.pending[r.BatchId]
		delete(st.pending, r.BatchId)
		st.mu.Unlock()
		if ok {
			ch <- r // buffered, one answer per batch
		}
	}
	if cause := context.Cause(ctx); cause != nil {
		err = cause // ours: a leader change, a timeout, the server stopping
	} else if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: the leader closed the audit stream", consensus.ErrLeaderChanged)
	}
	st.cancel(err)
	st.mu.Lock()
	st.err = err
	st.pending = nil
	close(st.done)
	st.mu.Unlock()
	log.Debug("audit stream closed", "leader", st.leader, "error", err)
}

// register makes answer the place the answer to batchID goes; an error
// when the stream has already ended.
func (st *auditStream) register(batchID string, answer chan *peerv1.AppendAuditStreamResponse) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pending == nil {
		return st.err
	}
	st.pending[batchID] = answer
	return nil
}

func (st *auditStream) unregister(batchID string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pending != nil {
		delete(st.pending, batchID)
	}
}

// appendStreamedAudit commits one batch of a follower's stream (principal
// p) and returns its answer (the error, if any, goes into it). A batch the
// follower marks mergeable (its first attempt) is merged into this
// leader's next entry with the leader's own events and other followers'
// batches (auditBatcher.AppendPart): one Raft entry, one apply and one
// cosigning round for all of them. Otherwise, or when this node does not
// lead, when not every server has shown it applies merged entries
// (mergeAllowed), or when its audit queue is full, the batch is an entry
// of its own.
func (s *peerService) appendStreamedAudit(ctx context.Context, p Principal, req *peerv1.AppendAuditStreamRequest) (*peerv1.AppendAuditStreamResponse, error) {
	batch := req.GetAudit()
	out := &peerv1.AppendAuditStreamResponse{BatchId: batch.GetBatchId()}
	mergeable := req.GetMergeable() && batch.GetNodeId() != "" && batch.GetBatchId() != ""
	if mergeable {
		if err := checkPeerBatch(p, batch); err != nil {
			return out, err
		}
		s.auditStreams.sawMergeable(batch.NodeId)
	}
	if mergeable && s.auditsDecisions() && s.raft.IsLeader() && s.auditStreams.mergeAllowed(s.cfg.NodeID, s.peerServers(ctx)) {
		r, err := s.batcher.AppendPart(ctx, batch)
		switch {
		case err == nil:
			out.FirstSequence, out.Index, out.Merged, out.LeafOffset = r.seq, r.index, true, r.leafOffset
			if r.quorum != nil {
				out.BatchHead, out.Signatures = r.quorum.BatchHead, r.quorum.Signatures
			}
			return out, nil
		case !errors.Is(err, errAuditQueueFull):
			return out, err
		}
	}
	res, err := s.appendPeerAudit(ctx, p, batch)
	if err != nil {
		return out, err
	}
	out.FirstSequence, out.Index = res.FirstSequence, res.Index
	return out, nil
}
