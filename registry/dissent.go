package registry

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// A replica whose evaluation of a decision batch differs from the quorum's
// is the one that diverged (AG-783 Scenario C): replicas that applied the
// same log re-derive every decision the same way and so sign the same
// head, refused leaves included (cosign.go). When this node refuses a
// decision of a batch (it does not re-derive on its state, or another
// reason every honest replica shares) while a quorum of the other nodes
// signed a head of that batch that differs from this node's, its state is
// not the cluster's. It then marks itself diverged (divergence.go): it
// stops answering, raises the alert and reports it to the leader, which
// records it in every healthy replica's audit log. When a quorum signed
// this node's own head, the refusal is the cluster's (a decision a write
// overtook, or one forged by the node that decided it), and nothing is
// wrong here.

// dissentTimeout bounds how long this node waits for the others' verdicts
// on a batch it refused.
const dissentTimeout = 10 * time.Second

// checkDissents looks into every batch in which this node's cosigner
// refused a decision, until ctx ends.
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
// and reports whether a quorum of them signed (with their endorsed keys)
// one same head that differs from the one this node computed, which
// refuses a decision.
func (s *Server) outvoted(ctx context.Context, index uint64) (string, bool) {
	own, err := s.cfg.Cosigner.Result(ctx, index)
	if err != nil || own.head == nil || len(own.why) == 0 {
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
			// Its verdict on its own head: a signature by a key endorsed
			// for it, or nothing.
			if a := s.checkAnswer(r, srv.ID, res, err, nil); a.sig == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			byHead[string(res.head)] = append(byHead[string(res.head)], srv.ID)
		})
	}
	wg.Wait()
	nodes, ok := outvotedBy(own.head, byHead, need)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("nodes %s signed another verdict on the decision batch at index %d than this node (%s), which refused decisions %v (%v)",
		strings.Join(nodes, ", "), index, s.cfg.NodeID, slices.Sorted(maps.Keys(own.why)), firstReason(own.why)), true
}

// outvotedBy reports the nodes (sorted) that, need or more, signed one
// same head of a batch other than own, this node's head: byHead maps each
// head to the nodes whose valid signature it carries.
func outvotedBy(own []byte, byHead map[string][]string, need int) ([]string, bool) {
	for head, nodes := range byHead {
		if need > 0 && len(nodes) >= need && head != string(own) {
			return slices.Sorted(slices.Values(nodes)), true
		}
	}
	return nil, false
}
