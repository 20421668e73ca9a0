package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
)

// RunCheckpoints is a leader task: every CheckpointInterval, if the log
// grew, sign a checkpoint of it with the registry key and commit it. It
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

// errAuditAltered: the local audit log no longer matches what was signed.
var errAuditAltered = errors.New("audit log altered")
