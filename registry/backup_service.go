package registry

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// SnapshotFormat is the format of backup snapshots this server writes.
const SnapshotFormat = 1

// snapshotChunk is the most snapshot bytes one SaveSnapshotResponse
// carries: well under the 4 MiB a gRPC client receives by default.
const snapshotChunk = 512 << 10

// SaveSnapshot streams a backup of this node's state: a linearizable read
// index first (the snapshot holds every write acknowledged before the
// call), then a Raft snapshot taken after it, in chunks, then the seal: the
// SHA-256 of the chunks signed by this node's endorsed key. A node whose
// key is not endorsed refuses before sending anything.
func (s *clusterService) SaveSnapshot(_ *trustfedv1.SaveSnapshotRequest, ss grpc.ServerStreamingServer[trustfedv1.SaveSnapshotResponse]) error {
	ctx := ss.Context()
	if s.cfg.Operator == nil {
		return status.Error(codes.Unimplemented, "this server takes no backups")
	}
	readIndex, err := s.raft.LinearizableRead(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: read index: %w", err)
	}
	signer, keyID, err := s.nodeSigner(s.store.Read(), s.clock())
	if err != nil {
		return err
	}
	snap, rc, err := s.cfg.Operator.OpenSnapshot(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	defer rc.Close()
	info := &trustfedv1.SnapshotInfo{
		Format: SnapshotFormat, NodeId: s.cfg.NodeID, Index: snap.Index, Term: snap.Term, ReadIndex: readIndex,
		CreateTime: timestamppb.New(s.clock()), Version: s.cfg.Version,
	}
	if err := ss.Send(&trustfedv1.SaveSnapshotResponse{Part: &trustfedv1.SaveSnapshotResponse_Info{Info: info}}); err != nil {
		return err
	}
	h := sha256.New()
	var size uint64
	buf := make([]byte, snapshotChunk)
	for {
		n, rerr := io.ReadFull(rc, buf)
		if n > 0 {
			h.Write(buf[:n])
			size += uint64(n)
			if err := ss.Send(&trustfedv1.SaveSnapshotResponse{Part: &trustfedv1.SaveSnapshotResponse_Chunk{Chunk: buf[:n]}}); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return fmt.Errorf("snapshot: read: %w", rerr)
		}
	}
	stmt, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.SnapshotStatement{Info: info, Size: size, Sha256: h.Sum(nil)})
	if err != nil {
		return fmt.Errorf("snapshot: statement: %w", err)
	}
	sig, err := signer.Sign(ctx, attestation.PurposeSnapshot, stmt)
	if err != nil {
		return fmt.Errorf("snapshot: sign: %w", err)
	}
	s.log.Info("backup snapshot sent", "index", snap.Index, "term", snap.Term, "read_index", readIndex, "bytes", size, "key_id", keyID)
	return ss.Send(&trustfedv1.SaveSnapshotResponse{Part: &trustfedv1.SaveSnapshotResponse_Seal{Seal: &trustfedv1.SnapshotSeal{
		Statement: stmt, KeyId: keyID, Signature: sig,
	}}})
}

// TransferLeadership hands this leader's leadership to node_id (or the
// most up-to-date voter) and waits until it stepped down. It runs on the
// leader (followers forward it).
func (s *clusterService) TransferLeadership(ctx context.Context, req *trustfedv1.TransferLeadershipRequest) (*trustfedv1.TransferLeadershipResponse, error) {
	if s.cfg.Operator == nil {
		return nil, status.Error(codes.Unimplemented, "this server cannot transfer leadership")
	}
	if id := req.GetNodeId(); id != "" {
		if err := attestation.ValidateNodeID(id); err != nil {
			return nil, state.Invalid("node_id", "%v", err)
		}
		servers, err := s.raft.Servers(ctx)
		if err != nil {
			return nil, err
		}
		var target *trustfedv1.ClusterMember
		for _, sv := range servers {
			if sv.ID == id {
				target = member(sv)
			}
		}
		switch {
		case target == nil:
			return nil, status.Errorf(codes.NotFound, "node_id: %s is not a member of the cluster (trustfed cluster members)", id)
		case id == s.cfg.NodeID:
			return nil, state.Invalid("node_id", "%s already leads", id)
		case !target.Voter:
			return nil, status.Errorf(codes.FailedPrecondition, "node_id: %s is not a voter yet: it cannot lead", id)
		}
		if err := s.cfg.Operator.TransferLeadershipTo(ctx, id, target.RaftAddress); err != nil {
			return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
		}
	} else if err := s.raft.TransferLeadership(ctx); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	resp := s.transferred()
	s.log.Info("leadership transferred", "to", req.GetNodeId(), "leader", resp.LeaderId)
	return resp, nil
}

// transferred is the answer to a TransferLeadership that completed (or
// that was forwarded to a leader which then stepped down): the leader this
// node knows now.
func (s *Server) transferred() *trustfedv1.TransferLeadershipResponse {
	resp := &trustfedv1.TransferLeadershipResponse{}
	if l, ok := s.raft.Leader(); ok {
		resp.LeaderId = l.ID
	}
	return resp
}
