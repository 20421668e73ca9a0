package registry

import (
	"context"
	"net"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Status reports this node and the cluster as it sees it.
func (s *Server) Status(ctx context.Context, _ *trustfedv1.StatusRequest) (*trustfedv1.StatusResponse, error) {
	st := s.raft.Status()
	resp := &trustfedv1.StatusResponse{
		NodeId:       st.NodeID,
		State:        st.State,
		Ready:        st.Ready,
		Term:         st.Term,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		LastLogIndex: st.LastLogIndex,
		LastContact:  durationpb.New(st.LastContact),
		Version:      s.cfg.Version,
		AuditFault:   s.cfg.AuditFault(),
		AuditSize:    s.auditSize(),
		CaughtUp:     st.CaughtUp,
		NotReady:     s.Readiness().Reason,
	}
	if st.HasLeader {
		resp.Leader = member(st.Leader)
	}
	servers, err := s.raft.Servers(ctx)
	if err != nil {
		return nil, err
	}
	for _, sv := range servers {
		resp.Members = append(resp.Members, member(sv))
	}
	return resp, nil
}

func member(sv consensus.Server) *trustfedv1.ClusterMember {
	return &trustfedv1.ClusterMember{NodeId: sv.ID, RaftAddress: sv.RaftAddr, ApiAddress: sv.APIAddr, Voter: sv.Voter, Leader: sv.Leader}
}

// Join adds a voter. It runs on the leader (followers forward it).
func (s *Server) Join(ctx context.Context, req *trustfedv1.JoinRequest) (*trustfedv1.JoinResponse, error) {
	if err := attestation.ValidateNodeID(req.GetNodeId()); err != nil {
		return nil, state.Invalid("node_id", "%v", err)
	}
	if err := validateHostPort("raft_address", req.GetRaftAddress()); err != nil {
		return nil, err
	}
	if err := validateHostPort("api_address", req.GetApiAddress()); err != nil {
		return nil, err
	}
	if p, _ := PrincipalFrom(ctx); p.Role == RoleNode && p.ID != "node:"+req.NodeId {
		return nil, state.Invalid("node_id", "a node may only join as itself (certificate names %s)", p.ID)
	}
	if err := s.raft.AddVoter(ctx, req.NodeId, req.RaftAddress, req.ApiAddress); err != nil {
		return nil, err
	}
	s.log.Info("voter joined", "node", req.NodeId, "raft", req.RaftAddress, "api", req.ApiAddress)
	return &trustfedv1.JoinResponse{}, nil
}

// Leave removes a server. It runs on the leader (followers forward it).
func (s *Server) Leave(ctx context.Context, req *trustfedv1.LeaveRequest) (*trustfedv1.LeaveResponse, error) {
	if err := attestation.ValidateNodeID(req.GetNodeId()); err != nil {
		return nil, state.Invalid("node_id", "%v", err)
	}
	if err := s.raft.RemoveServer(ctx, req.NodeId); err != nil {
		return nil, err
	}
	s.log.Info("server left", "node", req.NodeId)
	return &trustfedv1.LeaveResponse{}, nil
}

// ReadIndex serves the read-index protocol to followers.
func (s *Server) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	idx, err := s.raft.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return &peerv1.ReadIndexResponse{Index: idx}, nil
}

func validateHostPort(field, addr string) error {
	if addr == "" {
		return state.Invalid(field, "is required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return state.Invalid(field, "%q is not a host:port address", addr)
	}
	return nil
}

func (s *Server) auditSize() uint64 {
	if s.audit == nil {
		return 0
	}
	return s.audit.Size()
}
