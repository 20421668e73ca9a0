package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/faultinject"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/state"
)

// registerLeaderTasks registers what only the leader runs: revocation
// cascades and their sweeper, the signing key, the bootstrap admin token
// (-bootstrap), the dev admin (-dev), signed audit checkpoints and the
// clock check (clockcheck.go).
func (s *Server) registerLeaderTasks() error {
	s.node.RegisterLeaderTask("cascades", s.cascades.Run)
	s.node.RegisterLeaderTask("sweeper", s.cascades.RunSweeper)
	keyReady := make(chan struct{})
	s.node.RegisterLeaderTask("signing-key", signingKeyTask(s.node, s.store, s.cfg.NodeID, s.nodeKeys, keyReady, s.logger))
	s.node.RegisterLeaderTask("retire-registry-seed", retireSeedTask(s.node, s.store, s.logger))
	if s.cfg.Bootstrap {
		secret, err := ensureBootstrapToken(s.cfg.AdminTokenFile)
		if err != nil {
			return err
		}
		tokenReady := make(chan struct{})
		s.node.RegisterLeaderTask("bootstrap-token", bootstrapTokenTask(s.node, s.store, secret, s.cfg.BootstrapTokenTTL, tokenReady, s.logger))
		if s.cfg.Dev {
			if err := s.registerDevAdmin(secret, keyReady, tokenReady); err != nil {
				return err
			}
		}
	}
	s.node.RegisterLeaderTask("audit-checkpoints", s.reg.RunCheckpoints)
	s.node.RegisterLeaderTask("clock-check", newClockChecker(s.node, s.peers, s.cfg.NodeID, s.logger.With("component", "clock")).run)
	return nil
}

// propose applies msg through Raft (registry.Propose, the one proposal
// path) and returns the command's own error.
func propose(ctx context.Context, node *consensus.Node, msg proto.Message, meta state.EnvelopeMeta) error {
	_, err := registry.Propose(ctx, node, msg, meta)
	return err
}

// proposeFirst proposes a command that stores something a cluster holds
// once (signing key, bootstrap token); FailedPrecondition means another
// leader already stored it, which is success.
func proposeFirst(ctx context.Context, node *consensus.Node, msg proto.Message, meta state.EnvelopeMeta) error {
	if err := propose(ctx, node, msg, meta); err != nil && !errors.Is(err, state.ErrFailedPrecondition) {
		return err
	}
	return nil
}

// bootstrapKeyValidity is how long a fresh cluster's first leader endorses
// its own key for (the admins endorse its successor, docs/keys.md).
const bootstrapKeyValidity = 365 * 24 * time.Hour

// signingKeyTask makes sure the registry can sign: a fresh cluster (no node
// key, no registry key) has its first leader endorse its own node key
// (BOOTSTRAP_NODE_KEY, the same trust root as the bootstrap admin token);
// no private key ever enters the replicated state. A cluster created
// before node keys keeps its registry key until its admins endorse node
// keys. Closes ready when the registry can sign.
func signingKeyTask(node *consensus.Node, store *state.Store, nodeID string, ring attestation.Keyring, ready chan struct{}, logger *slog.Logger) func(context.Context) error {
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	return func(ctx context.Context) error {
		return retry(ctx, logger, "endorse the bootstrap node key", func() error {
			if r := store.Read(); r.NodeKeysInForce() || r.RegistrySeedHeld() {
				markReady()
				return nil
			}
			if ring == nil {
				return errors.New("this node has no signing key of its own")
			}
			pseudonym := make([]byte, 32)
			if _, err := rand.Read(pseudonym); err != nil {
				return err
			}
			now := faultinject.Now().UTC()
			pub := ring.Primary().Public()
			err := proposeFirst(ctx, node, &commandv1.BootstrapNodeKey{NodeId: nodeID, PublicKey: pub,
				ValidFrom: timestamppb.New(now.Add(-time.Minute)), ValidUntil: timestamppb.New(now.Add(bootstrapKeyValidity)), PseudonymKey: pseudonym},
				state.EnvelopeMeta{Time: now, Principal: "system:bootstrap"})
			if err != nil {
				return err
			}
			if store.Read().NodeKeysInForce() {
				logger.Info("bootstrap node key endorsed: this cluster signs with node keys only", "node", nodeID, "key_id", attestation.Fingerprint(pub))
			}
			markReady()
			return nil
		})
	}
}

// retireSeedTask migrates a cluster created before node keys: once node
// keys are in force, the leader proposes RETIRE_REGISTRY_SEED, which removes
// the registry key's private seed from the state (its public key stays in
// GET /v1/keys). The next snapshot and log compaction drop it from disk.
func retireSeedTask(node *consensus.Node, store *state.Store, logger *slog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if r := store.Read(); r.NodeKeysInForce() && r.RegistrySeedHeld() {
				err := proposeFirst(ctx, node, &commandv1.RetireRegistrySeed{}, state.EnvelopeMeta{Time: faultinject.Now().UTC(), Principal: "system:migration"})
				if err != nil && ctx.Err() == nil {
					logger.Warn("registry seed not retired yet", "error", err)
				} else if err == nil {
					logger.Info("node keys are in force: the registry key's private seed was removed from the replicated state")
				}
			}
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
	}
}

// ensureBootstrapToken returns the admin token kept in path, creating it
// (mode 0600) on first start.
func ensureBootstrapToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		secret := strings.TrimSpace(string(b))
		if _, err := attestation.ParseToken(secret); err != nil {
			return "", fmt.Errorf("admin token file %s: %w", path, err)
		}
		return secret, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read admin token file: %w", err)
	}
	_, secret, err := attestation.NewToken(rand.Reader)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token file: %w", err)
	}
	return secret, nil
}

// bootstrapTokenTask stores the first admin token (hashed), valid for ttl,
// once this node leads a cluster that has none. It closes ready when the
// registry holds a token.
func bootstrapTokenTask(node *consensus.Node, store *state.Store, secret string, ttl time.Duration, ready chan struct{}, logger *slog.Logger) func(context.Context) error {
	var closed bool
	markReady := func() {
		if !closed {
			closed = true
			close(ready)
		}
	}
	return func(ctx context.Context) error {
		id, err := attestation.ParseToken(secret)
		if err != nil {
			return err
		}
		hash := attestation.TokenHash(secret)
		return retry(ctx, logger, "store bootstrap token", func() error {
			if store.Read().TokenCount() > 0 {
				markReady()
				return nil
			}
			now := faultinject.Now().UTC().Truncate(time.Second)
			expire := now.Add(ttl)
			err := proposeFirst(ctx, node, &commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{
				Id: id, SecretSha256: hash[:], Role: commandv1.Role_ROLE_ADMIN, Description: "bootstrap admin token",
				ExpireTime: timestamppb.New(expire),
			}}, state.EnvelopeMeta{RequestID: "bootstrap-token-" + id, Time: now, Principal: "system:bootstrap"})
			if err != nil {
				return err
			}
			logger.Info("bootstrap admin token stored; create named admin tokens before it expires", "token_id", id, "expire_time", expire)
			markReady()
			return nil
		})
	}
}

// bootstrapTokenExpiry says when the stored bootstrap token (secret)
// expires, for the dev banner.
func bootstrapTokenExpiry(store *state.Store, secret string) string {
	hash := attestation.TokenHash(secret)
	tok, ok := store.Read().TokenByHash(hash[:])
	switch {
	case !ok:
		return "not stored"
	case tok.GetExpireTime() == nil:
		return "never (stored by an older server)"
	}
	return tok.GetExpireTime().AsTime().UTC().Format(time.RFC3339)
}
