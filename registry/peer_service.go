package registry

import (
	"context"
	"errors"
	"fmt"

	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// peerService implements peerv1.PeerService on the shared core.
type peerService struct {
	peerv1.UnsafePeerServiceServer
	*Server
}

// AppendAudit serves followers' audit batches on the leader.
func (s *peerService) AppendAudit(ctx context.Context, req *peerv1.AppendAuditRequest) (*peerv1.AppendAuditResponse, error) {
	if len(req.GetAudit().GetEvents()) == 0 {
		return nil, errors.New("audit: no events") // a peer bug, never user input
	}
	if len(req.Audit.Events) > maxAuditBatch {
		return nil, fmt.Errorf("audit: %d events in one batch, at most %d", len(req.Audit.Events), maxAuditBatch)
	}
	if p, _ := PrincipalFrom(ctx); req.Audit.NodeId != "" && p.ID != "node:"+req.Audit.NodeId {
		return nil, state.Invalid("audit.node_id", "a server sends only its own batches (certificate names %s)", p.ID)
	}
	res, _, err := s.proposeInTerm(ctx, req.Audit, "")
	if err != nil {
		return nil, err
	}
	if res.Duplicate {
		return nil, status.Errorf(codes.AlreadyExists, "audit batch %s of %s was already appended", req.Audit.BatchId, req.Audit.NodeId)
	}
	return &peerv1.AppendAuditResponse{FirstSequence: res.AuditSequence, Index: res.Index}, nil
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
// before promoting a non-voter). Answered locally, never forwarded.
func (s *peerService) Progress(context.Context, *peerv1.ProgressRequest) (*peerv1.ProgressResponse, error) {
	p := s.raft.Progress()
	return &peerv1.ProgressResponse{NodeId: p.NodeID, Term: p.Term, AppliedIndex: p.AppliedIndex}, nil
}
