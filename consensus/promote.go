package consensus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

const (
	// defaultPromotionStabilization is how long a non-voter must stay caught
	// up before the leader promotes it (Consul's autopilot waits 10s too).
	defaultPromotionStabilization = 10 * time.Second
	// maxPromotionLag is how many entries a non-voter's applied index may
	// trail the leader's and still count as caught up.
	maxPromotionLag = 64
	// progressTimeout bounds one progress question to a non-voter.
	progressTimeout = 2 * time.Second
)

// Progress is how far a server has applied the log, as it reports itself.
type Progress struct {
	NodeID       string
	Term         uint64
	AppliedIndex uint64
	// Time is the node's wall clock when it answered (zero from a server
	// that does not send it).
	Time time.Time
}

// ProgressClient is how the leader asks a non-voter, at its replicated API
// address, for its Progress (implemented elsewhere over gRPC).
type ProgressClient interface {
	Progress(ctx context.Context, apiAddr string) (Progress, error)
}

// Progress reports this node's id, term and applied index: what a leader
// asks before promoting it.
func (n *Node) Progress() Progress {
	return Progress{NodeID: n.cfg.NodeID, Term: n.raft.CurrentTerm(), AppliedIndex: n.fsm.appliedIndex()}
}

// peerHealth is the leader's view of its peers: which ones its heartbeats
// currently fail to reach (from raft's heartbeat observations) and which
// non-voters the promoter last found caught up. It is reset each time this
// node becomes leader: raft starts new heartbeats then.
type peerHealth struct {
	mu      sync.Mutex
	failing map[string]time.Time // id -> last contact (zero if none) while its heartbeats fail
	caught  map[string]bool      // non-voters the promoter found caught up in its last round
}

func newPeerHealth() *peerHealth {
	return &peerHealth{failing: map[string]time.Time{}, caught: map[string]bool{}}
}

// observe records a heartbeat observation from raft.
func (p *peerHealth) observe(o raft.Observation) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		p.failing[string(d.PeerID)] = d.LastContact
	case raft.ResumedHeartbeatObservation:
		delete(p.failing, string(d.PeerID))
	}
}

// isHeartbeat selects the observations peerHealth uses.
func isHeartbeat(o *raft.Observation) bool {
	switch o.Data.(type) {
	case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
		return true
	}
	return false
}

// reachable: no heartbeat to id has failed since it last succeeded.
func (p *peerHealth) reachable(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, failing := p.failing[id]
	return !failing
}

func (p *peerHealth) caughtUp(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caught[id]
}

func (p *peerHealth) setCaughtUp(id string, v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v {
		p.caught[id] = true
	} else {
		delete(p.caught, id)
	}
}

func (p *peerHealth) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.failing, id)
	delete(p.caught, id)
}

func (p *peerHealth) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.failing)
	clear(p.caught)
}

func (n *Node) promotionStabilization() time.Duration {
	if n.cfg.PromotionStabilization > 0 {
		return n.cfg.PromotionStabilization
	}
	return defaultPromotionStabilization
}

// runPromoter is the leader task that promotes non-voters: each round it
// asks every non-voter for its progress, and promotes one that has been
// caught up (checkCaughtUp) in every round for the stabilisation period.
// One falling behind starts its period again. It runs for as long as this
// node is the ready leader (Run starts and cancels it).
func (n *Node) runPromoter(ctx context.Context) error {
	every := min(max(n.promotionStabilization()/5, 50*time.Millisecond), 2*time.Second)
	since := map[string]time.Time{} // non-voter -> start of its current caught-up streak
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n.promoteRound(ctx, since)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (n *Node) promoteRound(ctx context.Context, since map[string]time.Time) {
	servers, confIndex, err := n.configuration(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.logger.Warn("promoter: cannot read the configuration", "error", err)
		}
		return
	}
	nonvoters := map[string]bool{}
	for _, s := range servers {
		if s.Suffrage != raft.Nonvoter {
			continue
		}
		id := string(s.ID)
		nonvoters[id] = true
		if err := n.checkCaughtUp(ctx, id, confIndex); err != nil {
			if !since[id].IsZero() {
				n.logger.Info("non-voter fell behind; its stabilisation period starts again", "id", id, "reason", err)
			} else {
				n.logger.Debug("non-voter not caught up", "id", id, "reason", err)
			}
			delete(since, id)
			n.peers.setCaughtUp(id, false)
			continue
		}
		n.peers.setCaughtUp(id, true)
		if since[id].IsZero() {
			since[id] = time.Now()
			n.logger.Info("non-voter caught up; promoting it once it stays so", "id", id, "after", n.promotionStabilization())
			continue
		}
		if time.Since(since[id]) < n.promotionStabilization() {
			continue
		}
		delete(since, id)
		if err := n.promote(ctx, s, servers, confIndex); err != nil {
			if ctx.Err() == nil {
				n.logger.Warn("promoter: promotion failed; retrying", "id", id, "error", err)
			}
			return
		}
		n.peers.setCaughtUp(id, false)
		return // the configuration changed: the next round reads it again
	}
	for id := range since {
		if !nonvoters[id] {
			delete(since, id)
		}
	}
}

// checkCaughtUp asks non-voter id for its progress: it must answer as id,
// in the leader's term, having applied the configuration entry at
// confIndex (so raft's replication really reaches it at its raft address)
// and at most maxPromotionLag entries fewer than the leader.
func (n *Node) checkCaughtUp(ctx context.Context, id string, confIndex uint64) error {
	if n.cfg.Progress == nil {
		return errors.New("no progress client configured: cannot tell whether it caught up")
	}
	api := n.fsm.apiAddr(id)
	if api == "" {
		return errors.New("its API address is not replicated")
	}
	pctx, cancel := context.WithTimeout(ctx, progressTimeout)
	defer cancel()
	p, err := n.cfg.Progress.Progress(pctx, api)
	if err != nil {
		return fmt.Errorf("ask its progress at %s: %w", api, err)
	}
	if p.NodeID != id {
		return fmt.Errorf("the server at %s is %q", api, p.NodeID)
	}
	if term := n.raft.CurrentTerm(); p.Term != term {
		return fmt.Errorf("it is in term %d, the leader in %d", p.Term, term)
	}
	if p.AppliedIndex < confIndex {
		return fmt.Errorf("it applied up to index %d, short of the configuration entry %d", p.AppliedIndex, confIndex)
	}
	if leader := n.fsm.appliedIndex(); p.AppliedIndex+maxPromotionLag < leader {
		return fmt.Errorf("it applied up to index %d, more than %d behind the leader's %d", p.AppliedIndex, maxPromotionLag, leader)
	}
	return nil
}
