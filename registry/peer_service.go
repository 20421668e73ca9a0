package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"

	"github.com/trustfed/trustfed/internal/faultinject"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// peerService implements peerv1.PeerService on the shared core.
type peerService struct {
	peerv1.UnsafePeerServiceServer
	*Server
}

// AppendAudit serves followers' audit batches on the leader, one call each
// (a follower uses AppendAuditStream; this serves older followers).
func (s *peerService) AppendAudit(ctx context.Context, req *peerv1.AppendAuditRequest) (*peerv1.AppendAuditResponse, error) {
	p, _ := PrincipalFrom(ctx)
	return s.appendPeerAudit(ctx, p, req.GetAudit())
}

// AppendAuditStream serves a follower's stream of audit batches: each
// batch is committed as it arrives (up to auditStreamInFlight at once) and
// answered by batch id when it commits or fails. When the follower ends
// the stream, the batches still committing are answered first.
func (s *peerService) AppendAuditStream(stream peerv1.PeerService_AppendAuditStreamServer) error {
	ctx := stream.Context()
	p, _ := PrincipalFrom(ctx)
	var (
		wg     sync.WaitGroup
		sendMu sync.Mutex
	)
	defer wg.Wait()
	sem := make(chan struct{}, auditStreamInFlight)
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			out, err := s.appendStreamedAudit(ctx, p, req) // audit_stream.go
			if err != nil {
				st := status.Convert(toStatus(s.log, peerv1.PeerService_AppendAuditStream_FullMethodName, err))
				out.Code, out.Message = int32(st.Code()), st.Message()
			}
			sendMu.Lock()
			defer sendMu.Unlock()
			if err := stream.Send(out); err != nil {
				s.log.Debug("audit stream: answer not sent", "node", p.ID, "batch", out.BatchId, "error", err)
			}
		})
	}
}

// appendPeerAudit commits a batch a follower (principal p) sent.
func (s *peerService) appendPeerAudit(ctx context.Context, p Principal, batch *commandv1.AppendAudit) (*peerv1.AppendAuditResponse, error) {
	if err := checkPeerBatch(p, batch); err != nil {
		return nil, err
	}
	res, _, err := s.proposeInTerm(ctx, batch, "")
	if err != nil {
		return nil, err
	}
	if res.Duplicate {
		return nil, status.Errorf(codes.AlreadyExists, "audit batch %s of %s was already appended", batch.BatchId, batch.NodeId)
	}
	return &peerv1.AppendAuditResponse{FirstSequence: res.AuditSequence, Index: res.Index}, nil
}

// checkPeerBatch refuses a batch a follower (principal p) may not send:
// empty, too large, another server's, or holding merged parts (only the
// leader merges batches, into its own entries).
func checkPeerBatch(p Principal, batch *commandv1.AppendAudit) error {
	switch {
	case len(batch.GetEvents()) == 0:
		return errors.New("audit: no events") // a peer bug, never user input
	case len(batch.Events) > maxAuditBatch:
		return fmt.Errorf("audit: %d events in one batch, at most %d", len(batch.Events), maxAuditBatch)
	case batch.NodeId != "" && p.ID != "node:"+batch.NodeId:
		return state.Invalid("audit.node_id", "a server sends only its own batches (certificate names %s)", p.ID)
	case len(batch.Parts) > 0:
		return state.Invalid("audit.parts", "a server sends only its own batches")
	}
	return nil
}

// ReadIndex serves the read-index protocol to followers.
func (s *peerService) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	idx, err := s.raft.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return &peerv1.ReadIndexResponse{Index: idx}, nil
}

// Progress tells the leader how far this node has applied the log (asked
// before promoting a non-voter) and what its wall clock says (asked of
// every voter each second: server/clockcheck.go). Answered locally, never
// forwarded.
func (s *peerService) Progress(context.Context, *peerv1.ProgressRequest) (*peerv1.ProgressResponse, error) {
	p := s.raft.Progress()
	return &peerv1.ProgressResponse{NodeId: p.NodeID, Term: p.Term, AppliedIndex: p.AppliedIndex, Time: timestamppb.New(faultinject.Now())}, nil
}
