package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// ensureDevAdminKey returns the dev server's admin approval key kept in
// path, creating it (mode 0600) on first start.
func ensureDevAdminKey(path string) (ed25519.PrivateKey, error) {
	if key, err := attestation.LoadPrivateKey(path); err == nil {
		return key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("dev admin key %s: %w", path, err)
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := attestation.SavePrivateKey(path, key); err != nil {
		return nil, fmt.Errorf("write dev admin key: %w", err)
	}
	return key, nil
}

// devAdminTask enrols the dev server's admin key as the federation's only
// admin with a quorum of one (the only place a single admin may approve a
// sensitive change alone). It closes ready when the registry has an admin.
func devAdminTask(node *consensus.Node, store *state.Store, key ed25519.PrivateKey, ready chan struct{}, logger *slog.Logger) func(context.Context) error {
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	return func(ctx context.Context) error {
		return retry(ctx, logger, "enrol dev admin", func() error {
			if len(store.Read().Admins()) > 0 {
				markReady()
				return nil
			}
			admin := &trustfedv1.Admin{Id: "dev-admin", Name: "Dev admin", PublicKey: key.Public().(ed25519.PublicKey)}
			err := proposeFirst(ctx, node, &commandv1.BootstrapAdmin{Admin: admin, ApprovalsRequired: 1},
				state.EnvelopeMeta{RequestID: "bootstrap-dev-admin", Time: time.Now().UTC(), Principal: "system:bootstrap"})
			if err != nil {
				return err
			}
			logger.Info("dev admin enrolled; admin changes need 1 approval (dev mode only)", "admin", admin.Id)
			markReady()
			return nil
		})
	}
}

// devNodeKeyValidity is how long the dev server endorses its own key.
const devNodeKeyValidity = 365 * 24 * time.Hour

// devNodeKeyTask endorses the dev server's own signing key with the dev
// admin (quorum of one), as an admin quorum does for a real cluster's
// nodes. It closes ready when the state holds a valid endorsement of it.
func devNodeKeyTask(node *consensus.Node, store *state.Store, nodeID string, own attestation.Signer, admin ed25519.PrivateKey, ready chan struct{}, logger *slog.Logger) func(context.Context) error {
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	return func(ctx context.Context) error {
		return retry(ctx, logger, "endorse dev node key", func() error {
			now := time.Now().UTC()
			r := store.Read()
			if k, err := r.NodeSigningKey(nodeID, now); err == nil && bytes.Equal(k.PublicKey, own.Public()) {
				markReady()
				return nil
			}
			if len(r.Admins()) == 0 {
				return errors.New("the dev admin is not enrolled yet")
			}
			change := client.EndorseNodeKey(nodeID, own.Public(), now, now.Add(devNodeKeyValidity))
			change.Reason = "dev server endorses its own signing key"
			raw, err := client.EncodeAdminChange(change, now, time.Hour)
			if err != nil {
				return err
			}
			err = propose(ctx, node, &commandv1.ProposeAdminChange{Change: raw, Approval: client.ApproveAdminChange(admin, raw)},
				state.EnvelopeMeta{Time: now, Principal: "system:bootstrap"})
			if err != nil {
				return fmt.Errorf("endorse dev node key: %w", err)
			}
			logger.Info("dev node signing key endorsed by the dev admin", "node", nodeID, "key_id", attestation.Fingerprint(own.Public()))
			markReady()
			return nil
		})
	}
}

// DevInfo is what the dev banner shows, reported once the dev server holds
// its signing key, bootstrap token and admin.
type DevInfo struct {
	NodeID, DataDir            string
	GRPCAddr, HTTPAddr         string
	RaftAddr, CAFile           string
	AdminToken, AdminTokenFile string
	AdminTokenExpiry           string // RFC 3339, or why it is unknown
	AdminKeyFile               string
	// TemporaryDataDir: DataDir was made for this run and is removed when
	// the server stops (no -data-dir).
	TemporaryDataDir bool
}

// devState is what dev mode waits for before it reports DevInfo.
type devState struct {
	ready  []chan struct{}
	secret string
	key    string // admin key file
}

// registerDevAdmin enrols the dev admin key (created under the data dir on
// first start) as the federation's only admin.
func (s *Server) registerDevAdmin(secret string, keyReady, tokenReady chan struct{}) error {
	adminKey := filepath.Join(s.cfg.DataDir, "admin.key")
	key, err := ensureDevAdminKey(adminKey)
	if err != nil {
		return err
	}
	adminReady, nodeKeyReady := make(chan struct{}), make(chan struct{})
	s.node.RegisterLeaderTask("dev-admin", devAdminTask(s.node, s.store, key, adminReady, s.logger))
	s.node.RegisterLeaderTask("dev-node-key", devNodeKeyTask(s.node, s.store, s.cfg.NodeID, s.nodeKeys.Primary(), key, nodeKeyReady, s.logger))
	s.dev = &devState{ready: []chan struct{}{keyReady, tokenReady, adminReady, nodeKeyReady}, secret: secret, key: adminKey}
	return nil
}

// report waits until the dev server is ready, then calls cfg.DevReady.
func (d *devState) report(ctx context.Context, s *Server) {
	for _, ready := range d.ready {
		select {
		case <-ready:
		case <-ctx.Done():
			return
		}
	}
	if s.cfg.DevReady == nil {
		return
	}
	s.cfg.DevReady(DevInfo{
		NodeID: s.cfg.NodeID, DataDir: s.cfg.DataDir, GRPCAddr: s.GRPCAddr(), HTTPAddr: s.HTTPAddr(),
		RaftAddr: s.RaftAddr(), CAFile: s.CAFile(), AdminToken: d.secret, AdminTokenFile: s.cfg.AdminTokenFile,
		AdminTokenExpiry: bootstrapTokenExpiry(s.store, d.secret), AdminKeyFile: d.key, TemporaryDataDir: s.tempDataDir,
	})
}
