package registry

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// A replica whose evaluation of a decision batch differs from the quorum's
// is the one that diverged (AG-783 Scenario C): replicas that applied the
// same log re-derive every decision the same way, so when this node finds
// that a decision does not re-derive on its state (decision.ErrRederive)
// while a quorum of the other nodes vouched for that very batch, its state
// is not the cluster's. It then marks itself diverged (divergence.go): it
// stops answering, raises the alert and reports it to the leader, which
// records it in every healthy replica's audit log. When the others refuse
// the batch too, the batch was forged by the node that decided it, and
// nothing is wrong here.

// dissentTimeout bounds how long this node waits for the others' verdicts
// on a batch it refused.
const dissentTimeout = 10 * time.Second

// checkDissents looks into every batch this node's cosigner refused for a
// decision that did not re-derive, until ctx ends.
func (s *Server) checkDissents(ctx context.Context) {
	c := s.cfg.Cosigner
	for {
		select {
		case <-ctx.Done():
			return
		case index := <-c.dissents:
			if _, diverged := s.cfg.Divergence.Status(); diverged {
				continue
			}
			if reason, ok := s.outvoted(ctx, index); ok {
				s.log.Error("this node re-derives a decision batch differently from a quorum of the cluster: its state diverged", "index", index, "reason", reason)
				s.cfg.Divergence.Mark(index, reason)
			}
		}
	}
}

// outvoted asks every other server for its verdict on the batch at index,
// and reports whether a quorum of them vouched for one same head (with
// their endorsed keys), which this node refused.
func (s *Server) outvoted(ctx context.Context, index uint64) (string, bool) {
	own, err := s.cfg.Cosigner.Result(ctx, index)
	if err != nil || own.sig != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, dissentTimeout)
	defer cancel()
	r := s.store.Read()
	need := quorumAt(r, s.clock())
	var mu sync.Mutex
	byHead := map[string][]string{}
	var wg sync.WaitGroup
	for _, srv := range s.peerServers(ctx) {
		if srv.ID == s.cfg.NodeID || srv.APIAddr == "" {
			continue
		}
		wg.Go(func() {
			res, err := s.askCosign(ctx, srv, index, nil)
			if err != nil {
				return
			}
			// Its verdict on its own head: a signature by a key endorsed
			// for it, or nothing.
			if a := s.checkAnswer(r, srv.ID, res, nil, res.root, res.head); a.sig == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			byHead[string(res.head)] = append(byHead[string(res.head)], srv.ID)
		})
	}
	wg.Wait()
	for _, nodes := range byHead {
		if need > 0 && len(nodes) >= need {
			slices.Sort(nodes)
			return fmt.Sprintf("nodes %s vouched for the decision batch at index %d, which this node (%s) refused: %v",
				strings.Join(nodes, ", "), index, s.cfg.NodeID, own.err), true
		}
	}
	return "", false
}
