package server

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/trustfed/trustfed/attestation"
)

// openNodeKey opens this node's own signing key in its data directory,
// generating it (mode 0600) on first start. Its public half is published
// by the Status RPC (node_key_id, node_public_key) for an admin quorum to
// endorse (`trustfed key endorse NODE --from-node ADDR`); the private half
// never leaves the node: it is not in the Raft log, snapshots or backups.
func (s *Server) openNodeKey() error {
	ring, created, err := attestation.OpenFileKeyring(s.cfg.DataDir)
	if err != nil {
		return err
	}
	id := attestation.Fingerprint(ring.Primary().Public())
	if created {
		s.logger.Info("node signing key generated", "key_id", id, "path", filepath.Join(s.cfg.DataDir, attestation.NodeKeyFile))
	}
	s.nodeKeys = ring
	return nil
}

// TakeSnapshot forces a Raft snapshot of this node now.
func (s *Server) TakeSnapshot(ctx context.Context) error {
	if err := s.node.Snapshot(ctx); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}
