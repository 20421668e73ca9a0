package registry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The start-up check of a cluster with node keys in force trusts no single
// server, the leader included: a restarted node compares its state with a
// checkpoint certified by a quorum of the registry nodes. First the newest
// certified checkpoint its peers hold (any of them: the certificate proves
// itself); when this node no longer keeps its state at that checkpoint's
// index (it restored a newer snapshot) or no peer holds one, it asks its
// peers to certify its own current view instead. A mismatch with a
// certified checkpoint, or a quorum of nodes that each find this node's
// view differs from theirs, marks it diverged.

// GetCertifiedCheckpoint serves this server's newest certified checkpoint.
func (s *peerService) GetCertifiedCheckpoint(context.Context, *peerv1.GetCertifiedCheckpointRequest) (*peerv1.GetCertifiedCheckpointResponse, error) {
	resp := &peerv1.GetCertifiedCheckpointResponse{NodeId: s.cfg.NodeID}
	cp, ok := s.store.Read().LatestCheckpoint()
	if !ok {
		return resp, nil
	}
	if text, _, err := attestation.SplitNote(cp.Note); err == nil {
		if c, err := attestation.ParseCheckpoint([]byte(text)); err == nil && c.State != nil {
			resp.Note, resp.Index = cp.Note, cp.Index
		}
	}
	return resp, nil
}

// errNoCertified: no peer holds a certified checkpoint this node can use.
var errNoCertified = errors.New("no certified checkpoint to compare with")

// verifyCertifiedAtStart is the start-up check with node keys in force. It
// returns nil once this node's state is verified or it was marked
// diverged, an error to retry.
func (s *Server) verifyCertifiedAtStart(ctx context.Context) error {
	keys := s.store.Read().NodeKeysForVerify()
	servers, err := s.raft.Servers(ctx)
	if err != nil {
		return fmt.Errorf("cluster servers: %w", err)
	}
	var peers []peerAddr
	members := map[string]bool{s.cfg.NodeID: true}
	for _, srv := range servers {
		members[srv.ID] = true
		if srv.ID != s.cfg.NodeID && srv.APIAddr != "" {
			peers = append(peers, peerAddr{srv.ID, srv.APIAddr})
		}
	}
	cp, from, err := s.newestCertified(ctx, peers, keys)
	switch {
	case err == nil:
		compared, err := s.compareAtStart(ctx, cp, from)
		if compared || err != nil {
			return err
		}
		s.log.Info("start-up state verification: this node no longer keeps its state at the newest certified checkpoint; asking its peers to certify its own", "state_index", cp.State.Index)
	case !errors.Is(err, errNoCertified):
		return err
	}
	// This node's own view is certified by the nodes of the current
	// configuration that hold an endorsed key (after a quorum-loss
	// recovery, the survivors: the lost servers' keys cannot sign).
	var current []*trustfedv1.RegistryKey
	for _, k := range keys {
		if members[k.NodeId] {
			current = append(current, k)
		}
	}
	return s.certifyOwnView(ctx, peers, current)
}

// errNoCertifiers: no server of the current configuration holds an
// endorsed key, so none can certify this node's view (the caller compares
// with the leader's commitment instead).
var errNoCertifiers = errors.New("no server of the cluster's configuration holds an endorsed node key")

// startCallTimeout bounds each call of the start-up check to a peer.
const startCallTimeout = 2 * time.Second

type peerAddr struct{ id, addr string }

// newestCertified asks every peer for its newest certified checkpoint and
// returns the newest (by state index) whose certificate verifies against
// this node's node keys, and the peer it came from.
func (s *Server) newestCertified(ctx context.Context, peers []peerAddr, keys []*trustfedv1.RegistryKey) (attestation.Checkpoint, string, error) {
	var best attestation.Checkpoint
	var from string
	var errs []error
	for _, p := range peers {
		c, err := s.cfg.Peers.conn(p.addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, startCallTimeout)
		resp, err := peerv1.NewPeerServiceClient(c).GetCertifiedCheckpoint(cctx, &peerv1.GetCertifiedCheckpointRequest{})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("newest certified checkpoint of %s: %w", p.id, err))
			continue
		}
		if len(resp.Note) == 0 {
			continue
		}
		cp, _, err := attestation.VerifyCertifiedCheckpoint(resp.Note, s.cfg.AuditOrigin, keys)
		if err != nil {
			s.log.Warn("a peer's certified checkpoint does not verify against this node's node keys", "peer", p.id, "error", err)
			continue
		}
		if best.State == nil || cp.State.Index > best.State.Index {
			best, from = cp, p.id
		}
	}
	if best.State != nil {
		return best, from, nil
	}
	if len(errs) > 0 {
		s.log.Debug("start-up state verification: peers did not answer with their certified checkpoint", "error", errors.Join(errs...))
	}
	return attestation.Checkpoint{}, "", errNoCertified
}

// compareAtStart waits until this node has applied the checkpoint's state
// index and compares its own root and commitment with it. compared is
// false when the state at that index is no longer kept.
func (s *Server) compareAtStart(ctx context.Context, cp attestation.Checkpoint, from string) (compared bool, err error) {
	if err := s.waitCheckpointed(ctx, cp); err != nil {
		return false, err
	}
	if _, kept, _ := s.cfg.CommitmentAt(cp.State.Index, nil); !kept {
		return false, nil
	}
	if err := s.compareCheckpoint(cp); err != nil {
		if !errors.Is(err, state.ErrFailedPrecondition) {
			return false, err
		}
		s.cfg.Divergence.Mark(cp.State.Index, fmt.Sprintf("at start-up, compared with the certified checkpoint of index %d (from %s): %v", cp.State.Index, from, err))
		return true, nil
	}
	s.log.Info("start-up state verification: this node's state matches a certified checkpoint", "state_index", cp.State.Index, "size", cp.Size, "from", from)
	return true, nil
}

// certifyOwnView asks the peers to certify this node's current view (its
// audit root and its commitment now): a quorum of certifications (this
// node's own counts, the others compared theirs) verifies it; refusals
// naming a difference from a quorum of the nodes mark it diverged.
func (s *Server) certifyOwnView(ctx context.Context, peers []peerAddr, keys []*trustfedv1.RegistryKey) error {
	if !s.raft.CaughtUp() {
		return errors.New("not caught up with the leader yet")
	}
	r := s.store.Read()
	now := s.clock().UTC().Truncate(time.Second)
	quorum, _ := attestation.CheckpointQuorum(keys, now)
	if quorum == 0 {
		return errNoCertifiers
	}
	cp, err := s.checkpointOfView(r, s.audit.Size(), now)
	if err != nil {
		return err
	}
	text := cp.Marshal()
	var lines, differ []string
	if line, err := s.certify(ctx, text); err == nil {
		lines = append(lines, line)
	}
	for _, p := range peers {
		cctx, cancel := context.WithTimeout(ctx, startCallTimeout)
		line, err := s.askCertification(cctx, p.id, p.addr, text)
		cancel()
		switch {
		case err == nil:
			lines = append(lines, line)
		case status.Code(err) == codes.FailedPrecondition:
			differ = append(differ, fmt.Sprintf("%s: %s", p.id, status.Convert(err).Message()))
		default:
			s.log.Debug("a peer did not certify this node's view", "peer", p.id, "error", err)
		}
	}
	if _, nodes, err := attestation.VerifyCertifiedCheckpoint(attestation.AssembleNote(text, lines), s.cfg.AuditOrigin, keys); err == nil {
		s.log.Info("start-up state verification: a quorum of the registry nodes certified this node's state", "state_index", r.Index(), "size", cp.Size, "nodes", nodes)
		return nil
	}
	if len(differ) >= quorum {
		s.cfg.Divergence.Mark(r.Index(), fmt.Sprintf("at start-up, %d registry nodes (a quorum) found this node's audit log or state at index %d differs from theirs: %v", len(differ), r.Index(), differ))
		return nil
	}
	return fmt.Errorf("this node's view at index %d is certified by too few nodes yet (%d refused as different)", r.Index(), len(differ))
}
