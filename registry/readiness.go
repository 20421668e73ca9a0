package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Readiness is what GET /readyz reports: whether this node serves calls
// now, and if not, why.
type Readiness struct {
	Ready        bool   `json:"ready"`
	Reason       string `json:"reason,omitempty"`
	NodeID       string `json:"node_id"`
	State        string `json:"state"`
	Leader       string `json:"leader,omitempty"`
	CaughtUp     bool   `json:"caught_up"`
	AppliedIndex uint64 `json:"applied_index"`
	CommitIndex  uint64 `json:"commit_index"`
}

// Readiness reports whether this node is ready to serve: it knows a
// leader, has caught up with the leader's log since it started, its
// state has not diverged from the cluster's and its audit log has no fault.
func (s *Server) Readiness() Readiness {
	st := s.raft.Status()
	r := Readiness{NodeID: s.cfg.NodeID, State: st.State, CaughtUp: st.CaughtUp, AppliedIndex: st.AppliedIndex, CommitIndex: st.CommitIndex}
	if st.HasLeader {
		r.Leader = st.Leader.ID
	}
	diverged, isDiverged := s.cfg.Divergence.Status()
	switch fault := s.cfg.AuditFault(); {
	case isDiverged:
		r.Reason = diverged.Message() + ": " + diverged.Reason
	case !st.HasLeader && !s.hasPeers(): // before verifying: that needs a cluster
		r.Reason = NoPeersHint
	case !s.verified.Load():
		r.Reason = errVerifying.Error()
	case !st.HasLeader:
		r.Reason = "no leader known"
	case st.State == "Leader" && !st.Ready:
		r.Reason = "elected leader, not ready yet: the barrier of its term is not committed (it cannot serve linearizable reads before)"
	case !st.CaughtUp:
		r.Reason = fmt.Sprintf("catching up with the leader's log (applied index %d, commit index %d)", st.AppliedIndex, st.CommitIndex)
	case st.StorageFault != "":
		r.Reason = "cannot write the raft log: " + st.StorageFault
	case fault != "":
		r.Reason = "audit log fault: " + fault
	case s.starting() != "":
		r.Reason = s.starting()
	default:
		r.Ready = true
	}
	return r
}

// starting is Config.Starting, "" when unset.
func (s *Server) starting() string {
	if s.cfg.Starting == nil {
		return ""
	}
	return s.cfg.Starting()
}

// healthService is the standard gRPC health service (grpc.health.v1). It
// answers what GET /readyz answers, to anyone, in every state of the node:
// the interceptors pass its calls through untouched (it is not in the
// authorisation table, which lists this API's methods).
const healthService = "/grpc.health.v1.Health/"

func isHealth(method string) bool { return strings.HasPrefix(method, healthService) }

// NoPeersHint is the readiness reason (and start-up warning) of a node
// that is in no cluster: it was neither bootstrapped nor added to one.
const NoPeersHint = "no known peers: this node is in no cluster. Start the first node of a new cluster with -bootstrap; " +
	"start this one with -join HOST:PORT (the gRPC address of a running node) to join a cluster; " +
	"a node that was in a cluster and lost its data must be removed (trustfed cluster remove-peer NODE_ID) and joined again"

// hasPeers reports whether this node's Raft configuration lists any server
// (itself included); an error counts as yes (nothing to suggest).
func (s *Server) hasPeers() bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	servers, err := s.raft.Servers(ctx)
	return err != nil || len(servers) > 0
}

// Fault is what /healthz reports as wrong with this node ("" = healthy):
// a diverged state first, then an audit log fault.
func (s *Server) Fault() string {
	if m, ok := s.cfg.Divergence.Status(); ok {
		return m.Message() + ": " + m.Reason
	}
	if f := s.cfg.AuditFault(); f != "" {
		return "audit log fault: " + f
	}
	return ""
}

// readinessRetryAfter is the Retry-After (seconds) of a 503 from /readyz.
const readinessRetryAfter = "1"

// serveReadiness answers GET /readyz: 200 when ready, 503 with
// Retry-After otherwise; the body is the Readiness as JSON either way.
func serveReadiness(w http.ResponseWriter, r Readiness) {
	w.Header().Set("Content-Type", "application/json")
	if !r.Ready {
		w.Header().Set("Retry-After", readinessRetryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}
