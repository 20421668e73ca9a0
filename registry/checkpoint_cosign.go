package registry

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Quorum-certified checkpoints (docs/design.md, "Checkpoints"): once node
// keys are in force the leader does not sign checkpoints itself. It builds
// the note text (tree head and trust-state commitment), asks every server
// to certify it (CosignCheckpoint), and proposes it once a quorum of the
// nodes holding an endorsed key signed. Each server signs only what it
// reproduced from its own audit log and state.

const (
	// cosignTimeout bounds one round of collecting certifications.
	cosignTimeout = 3 * time.Second
	// cosignGrace is how long the leader keeps waiting for the other
	// servers once it holds a quorum (more signatures, more witnesses of
	// the same state).
	cosignGrace = 250 * time.Millisecond
	// maxCosignSkew bounds how far a checkpoint's time may be from the
	// certifying server's clock: a node never vouches for a back- or
	// post-dated checkpoint (key validity is judged at that time).
	maxCosignSkew = time.Minute
)

// CosignCheckpoint serves a leader's request to certify a checkpoint.
func (s *peerService) CosignCheckpoint(ctx context.Context, req *peerv1.CosignCheckpointRequest) (*peerv1.CosignCheckpointResponse, error) {
	line, err := s.certify(ctx, req.GetText())
	if err != nil {
		return nil, err
	}
	return &peerv1.CosignCheckpointResponse{NodeId: s.cfg.NodeID, SignatureLine: line}, nil
}

// certify compares a checkpoint text with this node's own audit log and
// state (after waiting until it has applied that far) and signs it with
// this node's endorsed key valid at the checkpoint's time.
func (s *Server) certify(ctx context.Context, text []byte) (string, error) {
	if s.audit == nil {
		return "", errNoAudit
	}
	if n := len(text); n == 0 || n > 4096 || text[n-1] != '\n' || bytes.Contains(text, []byte("\n\n")) {
		return "", state.Invalid("text", "must be a checkpoint note text of at most 4096 bytes ending in one newline")
	}
	cp, err := attestation.ParseCheckpoint(text)
	if err != nil {
		return "", state.Invalid("text", "%v", err)
	}
	switch {
	case cp.State == nil:
		return "", state.Invalid("text", "has no trust-state line")
	case cp.Origin != s.cfg.AuditOrigin:
		return "", state.Invalid("text", "checkpoint of log %q, this server keeps %q", cp.Origin, s.cfg.AuditOrigin)
	}
	if d := s.clock().Sub(cp.State.Time); d > maxCosignSkew || d < -maxCosignSkew {
		return "", state.Invalid("text", "checkpoint time %s is %s from this server's clock (at most %s)", cp.State.Time.Format(time.RFC3339), d.Round(time.Second), maxCosignSkew)
	}
	if f := s.cfg.AuditFault(); f != "" {
		return "", status.Errorf(codes.Unavailable, "this node's audit log is faulty, not certifying: %s", f)
	}
	if err := s.waitCheckpointed(ctx, cp); err != nil {
		return "", err
	}
	if err := s.compareCheckpoint(cp); err != nil {
		s.log.Warn("checkpoint not certified: this node's log or state differs from the leader's", "size", cp.Size, "state_index", cp.State.Index, "error", err)
		return "", err
	}
	signer, _, err := s.nodeSigner(s.store.Read(), cp.State.Time)
	if err != nil {
		return "", err
	}
	return attestation.CertifyCheckpoint(ctx, text, s.cfg.NodeID, signer)
}

// waitCheckpointed waits until this node applied the checkpoint's state
// index and its audit log holds the checkpoint's tree.
func (s *Server) waitCheckpointed(ctx context.Context, cp attestation.Checkpoint) error {
	next := cp.State.Index
	for {
		if err := s.raft.WaitApplied(ctx, next); err != nil {
			return status.Errorf(codes.DeadlineExceeded, "this node has not applied index %d with %d audit entries yet: %v", cp.State.Index, cp.Size, err)
		}
		if s.audit.Size() >= cp.Size {
			return nil
		}
		next = max(next, s.raft.Progress().AppliedIndex) + 1
	}
}

// compareCheckpoint compares a checkpoint with this node's own root and
// commitment; FAILED_PRECONDITION says what differs.
func (s *Server) compareCheckpoint(cp attestation.Checkpoint) error {
	root, err := s.audit.RootAt(cp.Size)
	if err != nil {
		return fmt.Errorf("root of this node's first %d audit entries: %w", cp.Size, err)
	}
	if !bytes.Equal(root, cp.Root) {
		return state.FailedPrecondition("text", "audit root at size %d: this node has %x, the checkpoint says %x", cp.Size, root, cp.Root)
	}
	if s.cfg.CommitmentAt == nil {
		return status.Error(codes.Unavailable, "this node cannot compute its state commitment")
	}
	mine, kept, err := s.cfg.CommitmentAt(cp.State.Index, cp.State.Commitment)
	switch {
	case err != nil:
		return fmt.Errorf("own commitment at %d: %w", cp.State.Index, err)
	case !kept:
		return status.Errorf(codes.Unavailable, "this node no longer keeps its state at index %d", cp.State.Index)
	case !bytes.Equal(mine, cp.State.Commitment):
		return state.FailedPrecondition("text", "state commitment at index %d: this node has %x, the checkpoint says %x", cp.State.Index, mine, cp.State.Commitment)
	}
	return nil
}

// certifications collects signature lines over text: this node's own
// (when it holds an endorsed key) and every other server's, asked in
// parallel. It returns once every server answered, or quorum lines are in
// and cosignGrace passed, or cosignTimeout passed.
func (s *Server) certifications(ctx context.Context, text []byte, quorum int) ([]string, error) {
	servers, err := s.raft.Servers(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster servers: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cosignTimeout)
	defer cancel()
	type answer struct {
		node, line string
		err        error
	}
	answers := make(chan answer, len(servers)+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // the calls still out are abandoned before waiting for them
	asked := 0
	for _, srv := range servers {
		if srv.ID == s.cfg.NodeID || srv.APIAddr == "" {
			continue
		}
		asked++
		wg.Go(func() {
			line, err := s.askCertification(ctx, srv.ID, srv.APIAddr, text)
			answers <- answer{srv.ID, line, err}
		})
	}
	var lines []string
	if line, err := s.certify(ctx, text); err == nil {
		lines = append(lines, line)
	} else {
		s.log.Debug("this node does not certify the checkpoint itself", "error", err)
	}
	var grace <-chan time.Time
	for range asked {
		if len(lines) >= quorum && grace == nil {
			grace = time.After(cosignGrace)
		}
		select {
		case a := <-answers:
			switch {
			case status.Code(a.err) == codes.FailedPrecondition:
				// Its log or state differs from this leader's: if a quorum
				// certifies the checkpoint, that server marks itself diverged.
				s.log.Warn("a server refused to certify the checkpoint: its log or state differs", "node", a.node, "error", a.err)
				continue
			case a.err != nil:
				s.log.Debug("a server did not certify the checkpoint", "node", a.node, "error", a.err)
				continue
			}
			lines = append(lines, a.line)
		case <-grace:
			return lines, nil
		case <-ctx.Done():
			return lines, nil
		}
	}
	return lines, nil
}

// askCertification is one CosignCheckpoint call to the server id at addr.
func (s *Server) askCertification(ctx context.Context, id, addr string, text []byte) (string, error) {
	c, err := s.cfg.Peers.conn(addr)
	if err != nil {
		return "", err
	}
	resp, err := peerv1.NewPeerServiceClient(c).CosignCheckpoint(ctx, &peerv1.CosignCheckpointRequest{Text: text})
	if err != nil {
		return "", err
	}
	if resp.NodeId != id || !attestation.SignedBy(resp.SignatureLine, attestation.NodeSignerName(id)) {
		return "", fmt.Errorf("server %s answered as %q with a signature by another name", id, resp.NodeId)
	}
	return resp.SignatureLine, nil
}
