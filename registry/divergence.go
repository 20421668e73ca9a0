package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DivergenceMarker is the file, in the data directory, that records that
// this node's state diverged from the cluster's. While it exists the node
// answers nothing (UNAVAILABLE, /readyz 503): a restart does not clear it,
// only a repair does (trustfed cluster repair, docs/operations.md).
const DivergenceMarker = "diverged.json"

// Diverged is what the marker records: the first index at which this node's
// state was found to differ from the cluster's, and how.
type Diverged struct {
	Index  uint64    `json:"index"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Message is what every refused call says.
func (d Diverged) Message() string {
	return fmt.Sprintf("this node's state diverged from the cluster's at index %d: repair it, see docs/operations.md", d.Index)
}

// Divergence holds whether this node diverged, persisted in its data
// directory. Mark is safe to call from the Raft apply goroutine: it never
// blocks on the network.
type Divergence struct {
	path   string
	logger *slog.Logger
	mu     sync.Mutex // serialises Mark
	cur    atomic.Pointer[Diverged]
	once   sync.Once
	ch     chan struct{} // closed once diverged (marked)
}

// OpenDivergence loads the marker of dataDir, if any. A marker that cannot
// be read counts as diverged: the node fails closed.
func OpenDivergence(dataDir string, logger *slog.Logger) (*Divergence, error) {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Divergence{path: filepath.Join(dataDir, DivergenceMarker), logger: logger}
	b, err := os.ReadFile(d.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return d, nil
	case err != nil:
		return nil, fmt.Errorf("read the divergence marker: %w", err)
	}
	var m Diverged
	if err := json.Unmarshal(b, &m); err != nil {
		m = Diverged{Reason: fmt.Sprintf("the divergence marker %s is unreadable: %v", d.path, err)}
	}
	d.cur.Store(&m)
	logger.Error("this node's state diverged from the cluster's: it answers nothing until repaired", "index", m.Index, "reason", m.Reason, "marker", d.path)
	return d, nil
}

// Mark records that this node diverged at index. The first mark is kept;
// later ones only log.
func (d *Divergence) Mark(index uint64, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logger.Error("state diverged from the cluster's: this node stops answering until repaired", "index", index, "reason", reason)
	if d.cur.Load() != nil {
		return
	}
	m := &Diverged{Index: index, Reason: reason, Time: time.Now().UTC()}
	d.marked() // made open, as nothing was marked yet
	d.cur.Store(m)
	close(d.ch)
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = os.WriteFile(d.path, append(b, '\n'), 0o600)
	}
	if err != nil {
		// Serving stays refused for this run; a restart would not know.
		d.logger.Error("could not persist the divergence marker", "path", d.path, "error", err)
	}
}

// Status is the divergence, if this node diverged. A nil Divergence never
// diverged.
func (d *Divergence) Status() (Diverged, bool) {
	if d == nil {
		return Diverged{}, false
	}
	if m := d.cur.Load(); m != nil {
		return *m, true
	}
	return Diverged{}, false
}

// refuseDiverged is the status every call gets while the node is diverged.
func (s *Server) refuseDiverged() error {
	if m, ok := s.cfg.Divergence.Status(); ok {
		return status.Error(codes.Unavailable, m.Message())
	}
	return nil
}

// marked is closed by the first Mark (or at open, for a persisted marker).
func (d *Divergence) marked() <-chan struct{} {
	d.once.Do(func() {
		d.ch = make(chan struct{})
		if d.cur.Load() != nil {
			close(d.ch)
		}
	})
	return d.ch
}

// ReportDivergence serves, on the leader, a server's report that its state
// diverged: committed as a command, so every healthy replica records it in
// its audit log. A server reports only itself.
func (s *peerService) ReportDivergence(ctx context.Context, req *peerv1.ReportDivergenceRequest) (*peerv1.ReportDivergenceResponse, error) {
	d := req.GetDivergence()
	if err := state.ValidateReportDivergence(d); err != nil {
		return nil, err
	}
	if p, _ := PrincipalFrom(ctx); p.ID != "node:"+d.NodeId {
		return nil, state.Invalid("divergence.node_id", "a server reports only its own divergence (certificate names %s)", p.ID)
	}
	res, _, err := s.proposeInTerm(ctx, d, fmt.Sprintf("divergence:%s:%d", d.NodeId, d.Index))
	if err != nil {
		return nil, err
	}
	return &peerv1.ReportDivergenceResponse{Index: res.Index}, nil
}

// divergenceRetry is how long the report waits between attempts.
const divergenceRetry = time.Second

// reportDivergence waits until this node diverges, then tells the leader
// (once per run, retrying until it is committed or ctx ends), so the
// healthy majority audits the fault.
func (s *Server) reportDivergence(ctx context.Context) {
	d := s.cfg.Divergence
	if d == nil {
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-d.marked():
	}
	m, _ := d.Status()
	reason := m.Reason
	if r := []rune(reason); len(r) > state.MaxDivergenceReason {
		reason = string(r[:state.MaxDivergenceReason])
	}
	report := &commandv1.ReportDivergence{NodeId: s.cfg.NodeID, Index: max(m.Index, 1), Reason: cmp.Or(reason, "unknown")}
	t := time.NewTicker(divergenceRetry)
	defer t.Stop()
	for {
		index, err := s.reportDivergenceOnce(ctx, report)
		if err == nil {
			s.log.Info("divergence reported to the leader: the cluster's audit log records it", "index", index)
			return
		}
		s.log.Warn("divergence not reported to the leader yet", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reportDivergenceOnce is one attempt: proposed directly on the leader, or
// sent to it.
func (s *Server) reportDivergenceOnce(ctx context.Context, report *commandv1.ReportDivergence) (uint64, error) {
	requestID := fmt.Sprintf("divergence:%s:%d", report.NodeId, report.Index)
	if s.raft.IsLeader() {
		res, _, err := s.proposeInTerm(withPrincipal(ctx, Principal{ID: "node:" + s.cfg.NodeID}), report, requestID)
		return res.Index, err
	}
	l, ok := s.raft.Leader()
	if !ok || l.APIAddr == "" || l.ID == s.cfg.NodeID {
		return 0, consensus.ErrNoLeader
	}
	c, err := s.cfg.Peers.conn(l.APIAddr)
	if err != nil {
		return 0, err
	}
	cctx, cancel := s.raft.LeaderCall(ctx, l.ID)
	defer cancel()
	resp, err := peerv1.NewPeerServiceClient(c).ReportDivergence(cctx, &peerv1.ReportDivergenceRequest{Divergence: report})
	if err = consensus.CallErr(ctx, cctx, err); err != nil {
		return 0, fmt.Errorf("report divergence to leader %s: %w", l.ID, err)
	}
	return resp.Index, nil
}
