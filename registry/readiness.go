package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
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
	case !s.verified.Load():
		r.Reason = errVerifying.Error()
	case !st.HasLeader:
		r.Reason = "no leader known"
	case !st.CaughtUp:
		r.Reason = fmt.Sprintf("catching up with the leader's log (applied index %d, commit index %d)", st.AppliedIndex, st.CommitIndex)
	case st.StorageFault != "":
		r.Reason = "cannot write the raft log: " + st.StorageFault
	case fault != "":
		r.Reason = "audit log fault: " + fault
	default:
		r.Ready = true
	}
	return r
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
