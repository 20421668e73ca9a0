package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// RunCheckpoints is a leader task: every CheckpointInterval, if the log
// grew, make a checkpoint of it and commit it: certified by a quorum of the
// registry nodes once node keys are in force (publishCertified), signed by
// the registry key before. It
// first checks that its own log still has the root it signed last; if not,
// the log was altered on disk and it stops signing.
func (s *Server) RunCheckpoints(ctx context.Context) error {
	if s.audit == nil {
		return nil
	}
	t := time.NewTicker(CheckpointInterval)
	defer t.Stop()
	for {
		if err := s.publishCheckpoint(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("audit checkpoint not published", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) publishCheckpoint(ctx context.Context) error {
	if f := s.cfg.AuditFault(); f != "" {
		return fmt.Errorf("this node's audit log is faulty, not signing: %s", f)
	}
	if m, ok := s.cfg.Divergence.Status(); ok {
		return fmt.Errorf("not signing: %s", m.Message())
	}
	if _, err := s.raft.LinearizableRead(ctx); err != nil {
		return err
	}
	r := s.store.Read()
	size := s.audit.Size()
	if latest, ok := r.LatestCheckpoint(); ok {
		prev, err := checkpointOf(latest.Note)
		if err != nil {
			return err
		}
		root, err := s.audit.RootAt(prev.Size)
		if err != nil || !bytes.Equal(root, prev.Root) {
			return fmt.Errorf("%w: the local log's root at %d is %x, the last signed checkpoint says %x", errAuditAltered, prev.Size, root, prev.Root)
		}
		if size <= prev.Size {
			return nil
		}
	} else if size == 0 {
		return nil
	}
	if r.NodeKeysInForce() {
		return s.publishCertified(ctx, r, size)
	}
	k, err := s.currentKey(r)
	if err != nil {
		return err
	}
	signer, _, err := attestation.NewCheckpointSigner(s.cfg.AuditOrigin, k.key)
	if err != nil {
		return err
	}
	root, err := s.audit.RootAt(size)
	if err != nil {
		return err
	}
	note, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: s.cfg.AuditOrigin, Size: size, Root: root}, signer)
	if err != nil {
		return err
	}
	// The commitment to the trust state of the same view: every replica
	// compares it with its own at r.Index() when it applies the checkpoint.
	commitment, err := r.Commitment()
	if err != nil {
		return fmt.Errorf("state commitment: %w", err)
	}
	_, _, err = s.proposeInTerm(ctx, &commandv1.PutCheckpoint{Note: note, StateCommitment: commitment, StateIndex: r.Index()}, "")
	return err
}

// publishCertified builds the checkpoint text of the tree of size entries
// and of the trust state of view r, has it certified by a quorum of the
// nodes holding an endorsed key (this one included when it holds one) and
// proposes it.
func (s *Server) publishCertified(ctx context.Context, r *state.Reader, size uint64) error {
	now := s.clock().UTC().Truncate(time.Second)
	keys := r.NodeKeysForVerify()
	quorum, eligible := attestation.CheckpointQuorum(keys, now)
	if quorum == 0 {
		return fmt.Errorf("no endorsed node key is valid at %s: no checkpoint can be certified", now.Format(time.RFC3339))
	}
	root, err := s.audit.RootAt(size)
	if err != nil {
		return err
	}
	commitment, err := r.Commitment()
	if err != nil {
		return fmt.Errorf("state commitment: %w", err)
	}
	text := attestation.Checkpoint{Origin: s.cfg.AuditOrigin, Size: size, Root: root,
		State: &attestation.CheckpointState{Index: r.Index(), Commitment: commitment, Time: now}}.Marshal()
	lines, err := s.certifications(ctx, text, quorum)
	if err != nil {
		return err
	}
	note := attestation.AssembleNote(text, lines)
	_, nodes, err := attestation.VerifyCertifiedCheckpoint(note, s.cfg.AuditOrigin, keys)
	if err != nil {
		return fmt.Errorf("checkpoint of %d entries at index %d (nodes with a key: %v): %w", size, r.Index(), eligible, err)
	}
	s.log.Debug("checkpoint certified", "size", size, "state_index", r.Index(), "nodes", nodes)
	_, _, err = s.proposeInTerm(ctx, &commandv1.PutCheckpoint{Note: note, StateCommitment: commitment, StateIndex: r.Index()}, "")
	return err
}

// errAuditAltered: the local audit log no longer matches what was signed.
var errAuditAltered = errors.New("audit log altered")
