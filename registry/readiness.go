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
// leader, has caught up with the leader's log since it started, and its
// audit log has no fault.
func (s *Server) Readiness() Readiness {
	st := s.raft.Status()
	r := Readiness{NodeID: s.cfg.NodeID, State: st.State, CaughtUp: st.CaughtUp, AppliedIndex: st.AppliedIndex, CommitIndex: st.CommitIndex}
	if st.HasLeader {
		r.Leader = st.Leader.ID
	}
	switch fault := s.cfg.AuditFault(); {
	case !st.HasLeader:
		r.Reason = "no leader known"
	case !st.CaughtUp:
		r.Reason = fmt.Sprintf("catching up with the leader's log (applied index %d, commit index %d)", st.AppliedIndex, st.CommitIndex)
	case fault != "":
		r.Reason = "audit log fault: " + fault
	default:
		r.Ready = true
	}
	return r
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
