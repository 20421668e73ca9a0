package registry

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/faultinject"
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
	m := &Diverged{Index: index, Reason: reason, Time: faultinject.Now().UTC()}
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

// refuseDiverged is the status every call gets while the node is diverged,
// and every call but its peers' while it has not verified its state since
// it started (verifyAtStart).
func (s *Server) refuseDiverged(method string) error {
	if m, ok := s.cfg.Divergence.Status(); ok {
		return status.Error(codes.Unavailable, m.Message())
	}
	if !s.verified.Load() && !strings.HasPrefix(method, "/"+peerv1.PeerService_ServiceDesc.ServiceName+"/") {
		return status.Error(codes.Unavailable, errVerifying.Error())
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

// reportDivergenceOnce is one attempt: sent to the leader. A diverged
// leader first steps down (it must not lead: it serves nothing, not even
// its followers' read indexes); if no other voter can take over (a single
// node), it records the report itself.
func (s *Server) reportDivergenceOnce(ctx context.Context, report *commandv1.ReportDivergence) (uint64, error) {
	requestID := fmt.Sprintf("divergence:%s:%d", report.NodeId, report.Index)
	if s.raft.IsLeader() {
		err := s.raft.TransferLeadership(ctx)
		if err == nil {
			return 0, errors.New("stepped down as leader: reporting to the next one")
		}
		s.log.Error("a diverged leader could not step down: recording the divergence itself", "error", err)
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

// GetCommitment serves, on the leader, its commitment to the trust state at
// its applied index after a linearizable read (every write acknowledged
// before the call is in it).
func (s *peerService) GetCommitment(ctx context.Context, _ *peerv1.GetCommitmentRequest) (*peerv1.GetCommitmentResponse, error) {
	if !s.raft.IsLeader() {
		return nil, status.Error(codes.FailedPrecondition, "not the leader: ask the leader for its commitment")
	}
	if _, err := s.raft.LinearizableRead(ctx); err != nil {
		return nil, err
	}
	r := s.store.Read()
	c, err := r.Commitment()
	if err != nil {
		return nil, fmt.Errorf("state commitment: %w", err)
	}
	return &peerv1.GetCommitmentResponse{NodeId: s.cfg.NodeID, Index: r.Index(), Commitment: c}, nil
}

// errVerifying: this node has not yet compared its state with the
// cluster's since it started.
var errVerifying = errors.New("this node is verifying its state against the cluster's before it serves")

// verifyAtStart compares, once after start, this node's state with the
// cluster's. With node keys in force it compares with a checkpoint certified
// by a quorum of the registry nodes (verifyCertifiedAtStart); before, it
// asks the leader for its commitment at the leader's applied
// index, waits until it has applied that index itself and compares its own
// commitment there. Until then the node serves nothing but its peers
// (errVerifying); a mismatch marks it diverged. A leader is the reference
// and skips the check.
func (s *Server) verifyAtStart(ctx context.Context) {
	t := time.NewTicker(verifyPoll)
	defer t.Stop()
	for !s.verified.Load() {
		err := s.verifyOnce(ctx)
		if err == nil {
			s.verified.Store(true)
			return
		}
		s.log.Debug("start-up state verification not done yet", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// verifyPoll is how often the start-up verification retries and polls
// the applied index.
const verifyPoll = 50 * time.Millisecond

func (s *Server) verifyOnce(ctx context.Context) error {
	if _, diverged := s.cfg.Divergence.Status(); diverged {
		return nil // nothing to verify: it serves nothing anyway
	}
	if s.audit != nil && s.store.Read().NodeKeysInForce() {
		// verify_start.go: no single server is the reference.
		if err := s.verifyCertifiedAtStart(ctx); !errors.Is(err, errNoCertifiers) {
			return err
		}
		s.log.Warn("start-up state verification: no server of the configuration can certify this node's state; comparing with the leader's")
	}
	if s.raft.IsLeader() {
		s.log.Info("start-up state verification: this node leads, its state is the reference")
		return nil
	}
	l, ok := s.raft.Leader()
	if !ok || l.APIAddr == "" || l.ID == s.cfg.NodeID {
		return consensus.ErrNoLeader
	}
	c, err := s.cfg.Peers.conn(l.APIAddr)
	if err != nil {
		return err
	}
	cctx, cancel := s.raft.LeaderCall(ctx, l.ID)
	defer cancel()
	resp, err := peerv1.NewPeerServiceClient(c).GetCommitment(cctx, &peerv1.GetCommitmentRequest{})
	if status.Code(err) == codes.Unimplemented {
		// A leader of an older version (a rolling upgrade) has no commitment
		// to give: the checkpoints' commitments are compared instead.
		s.log.Warn("start-up state verification skipped: the leader does not serve its commitment", "leader", l.ID)
		return nil
	}
	if err = consensus.CallErr(ctx, cctx, err); err != nil {
		return fmt.Errorf("commitment from leader %s: %w", l.ID, err)
	}
	for s.store.Read().Index() < resp.Index {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(verifyPoll):
		}
	}
	mine, kept, err := s.cfg.CommitmentAt(resp.Index, resp.Commitment)
	switch {
	case err != nil:
		return fmt.Errorf("own commitment at %d: %w", resp.Index, err)
	case !kept:
		return fmt.Errorf("own state at index %d is no longer kept: asking again", resp.Index)
	case !bytes.Equal(mine, resp.Commitment):
		s.cfg.Divergence.Mark(resp.Index, fmt.Sprintf("at start-up, the state at index %d commits to %x, the leader %s's to %x", resp.Index, mine, l.ID, resp.Commitment))
		return nil
	}
	s.log.Info("start-up state verification: this node's state matches the leader's", "index", resp.Index, "leader", l.ID)
	return nil
}

// stateHashCheckEvery is how often each node recomputes the hash of its
// whole state (state.Reader.VerifyStateHash) to compare it with the one
// every write keeps up to date, off the apply goroutine. The kept hash is
// what the audit checkpoints' commitments are made of: it follows the
// applied commands, so a row changed behind them (memory corruption, an
// object mutated in place) shows only in a full recomputation. About
// 0.4 s of one core at 100k agreements (BENCHMARKS.md, "Scale").
const stateHashCheckEvery = 10 * time.Minute

// checkStateHash runs the periodic full check of the state hash until ctx
// ends; a difference marks this node diverged.
func (s *Server) checkStateHash(ctx context.Context) {
	if s.cfg.Divergence == nil {
		return
	}
	watchStateHash(ctx, stateHashCheckEvery, func() (uint64, error) {
		r := s.store.Read()
		return r.Index(), r.VerifyStateHash()
	}, s.cfg.Divergence.Mark, s.log)
}

// watchStateHash calls verify every interval until ctx ends or it reports
// a drift (state.ErrStateHashDrift), which it marks at the view's index.
func watchStateHash(ctx context.Context, every time.Duration, verify func() (uint64, error), mark func(index uint64, reason string), log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		index, err := verify()
		switch {
		case errors.Is(err, state.ErrStateHashDrift):
			mark(index, fmt.Sprintf("the periodic full recomputation of the state hash: %v", err))
			return
		case err != nil:
			log.Error("the periodic state hash check failed", "index", index, "error", err)
		default:
			log.Debug("state hash checked against a full recomputation", "index", index, "took", time.Since(start))
		}
	}
}
