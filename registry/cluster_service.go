package registry

import (
	"context"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/types/known/durationpb"
)

// clusterService implements trustfedv1.ClusterService on the shared core.
type clusterService struct {
	trustfedv1.UnsafeClusterServiceServer
	*Server
}

// Status reports this node and the cluster as it sees it.
func (s *clusterService) Status(ctx context.Context, _ *trustfedv1.StatusRequest) (*trustfedv1.StatusResponse, error) {
	st := s.raft.Status()
	readiness := s.Readiness()
	resp := &trustfedv1.StatusResponse{
		NodeId:       st.NodeID,
		State:        st.State,
		Ready:        readiness.Ready,
		LeaderReady:  st.Ready,
		Term:         st.Term,
		CommitIndex:  st.CommitIndex,
		AppliedIndex: st.AppliedIndex,
		LastLogIndex: st.LastLogIndex,
		LastContact:  durationpb.New(st.LastContact),
		Version:      s.cfg.Version,
		AuditFault:   s.cfg.AuditFault(),
		AuditSize:    s.auditSize(),
		CaughtUp:     st.CaughtUp,
		NotReady:     readiness.Reason,
	}
	if ring := s.cfg.NodeKeys; ring != nil {
		own := ring.Primary().Public()
		resp.NodeKeyId, resp.NodePublicKey = attestation.Fingerprint(own), own
		_, _, err := s.nodeSigner(s.store.Read(), s.clock())
		resp.NodeKeyEndorsed = err == nil
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
	suffrage := trustfedv1.Suffrage_SUFFRAGE_NONVOTER
	if sv.Voter {
		suffrage = trustfedv1.Suffrage_SUFFRAGE_VOTER
	}
	return &trustfedv1.ClusterMember{NodeId: sv.ID, RaftAddress: sv.RaftAddr, ApiAddress: sv.APIAddr, Voter: sv.Voter, Leader: sv.Leader,
		Suffrage: suffrage, CaughtUp: sv.CaughtUp}
}

// Join adds a server as a non-voter and answers at once with its suffrage;
// the leader promotes it to voter once it has caught up. It runs on the
// leader (followers forward it).
func (s *clusterService) Join(ctx context.Context, req *trustfedv1.JoinRequest) (*trustfedv1.JoinResponse, error) {
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
	sv, err := s.raft.AddNonvoter(ctx, req.NodeId, req.RaftAddress, req.ApiAddress)
	if err != nil {
		return nil, err
	}
	s.log.Info("server joined", "node", req.NodeId, "raft", req.RaftAddress, "api", req.ApiAddress, "voter", sv.Voter)
	return &trustfedv1.JoinResponse{Member: member(sv)}, nil
}

// Leave removes a server. It runs on the leader (followers forward it). A
// removal that would leave the cluster without a reachable quorum is
// refused (FAILED_PRECONDITION).
func (s *clusterService) Leave(ctx context.Context, req *trustfedv1.LeaveRequest) (*trustfedv1.LeaveResponse, error) {
	if err := attestation.ValidateNodeID(req.GetNodeId()); err != nil {
		return nil, state.Invalid("node_id", "%v", err)
	}
	if err := s.raft.RemoveServer(ctx, req.NodeId); err != nil {
		return nil, err
	}
	s.log.Info("server left", "node", req.NodeId)
	resp := &trustfedv1.LeaveResponse{}
	for _, k := range s.store.Read().NodeSigningKeys(req.NodeId, s.clock()) {
		resp.ValidKeyIds = append(resp.ValidKeyIds, k.KeyId)
	}
	if len(resp.ValidKeyIds) > 0 {
		s.log.Warn("the removed server's node keys are still valid: they keep counting towards the signatures a decision needs until the admins revoke them (trustfed key revoke)",
			"node", req.NodeId, "keys", resp.ValidKeyIds)
	}
	return resp, nil
}

// validateHostPort checks an address another server dials: host non-empty,
// port 1..65535, no scheme, no path.
func validateHostPort(field, addr string) error {
	if err := consensus.CheckAddress(addr); err != nil {
		return state.Invalid(field, "%v", err)
	}
	return nil
}

func (s *Server) auditSize() uint64 {
	if s.audit == nil {
		return 0
	}
	return s.audit.Size()
}
