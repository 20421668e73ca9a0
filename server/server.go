package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"github.com/trustfed/trustfed/revocation"
)

// Server is one registry node. New binds it and starts Raft; Run serves;
// Close releases what New acquired.
type Server struct {
	cfg Config
	// tempDataDir: dev mode made DataDir (no -data-dir); Close removes it.
	tempDataDir bool
	logger      *slog.Logger
	tls         tlsSet
	lis         listeners

	store    *state.Store
	fsm      *state.FSM
	auditLog *audit.Log
	peers    *registry.Peers
	refused  transportAudit
	node     *consensus.Node
	cascades *revocation.Runner
	reg      *registry.Server
	grpc     *grpc.Server
	gateway  *registry.Gateway
	http     *http.Server
	apiAddr  string

	// divergence: whether this node's state diverged from the cluster's
	// (registry/divergence.go); the FSM marks it.
	divergence *registry.Divergence

	dev *devState // nil unless cfg.Dev

	// nodeKeys are this node's own signing keys (nodekey.go).
	nodeKeys attestation.Keyring
	// cosigner vouches for the decision batches this replica applies.
	cosigner *registry.Cosigner

	closeOnce sync.Once
	closeErr  error
}

// New checks cfg, binds the listeners, opens the data dir (audit log, Raft
// log and snapshots) and starts the Raft node. In dev mode with no DataDir
// it creates a temporary one. Call Close when done (Run does not).
func New(cfg Config) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	temp := cfg.Dev && cfg.DataDir == ""
	if temp {
		if cfg.DataDir, err = os.MkdirTemp("", "trustfed-dev-"); err != nil {
			return nil, fmt.Errorf("create dev data dir: %w", err)
		}
	}
	cfg = cfg.withDefaults()
	if cfg.LogOutput == nil {
		cfg.LogOutput = os.Stderr
	}
	s := &Server{cfg: cfg, tempDataDir: temp}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Close())
		}
	}()
	if s.logger, err = newLogger(cfg.LogLevel, cfg.LogFormat, cfg.LogOutput); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	if s.tls, err = loadTLS(cfg); err != nil {
		return nil, err
	}
	if err := s.openNodeKey(); err != nil {
		return nil, err
	}
	if s.lis, err = listen(cfg); err != nil {
		return nil, err
	}
	if err := s.openState(); err != nil {
		return nil, err
	}
	if err := s.startServices(); err != nil {
		return nil, err
	}
	if err := s.startHTTP(); err != nil {
		return nil, err
	}
	if err := s.registerLeaderTasks(); err != nil {
		return nil, err
	}
	if err := s.writeAddrs(); err != nil {
		return nil, err
	}
	return s, nil
}

// openState opens the audit log, the state machine and the Raft node.
func (s *Server) openState() error {
	s.store = state.NewStore()
	s.fsm = state.NewFSM(s.store, attestation.Verifier{}, s.logger.With("component", "fsm"))
	var err error
	if s.divergence, err = registry.OpenDivergence(s.cfg.DataDir, s.logger.With("component", "divergence")); err != nil {
		return err
	}
	s.fsm.OnDivergence(s.divergence.Mark)
	s.cosigner = registry.NewCosigner(s.cfg.NodeID, s.cfg.AuditOrigin, s.nodeKeys, s.store, s.logger.With("component", "cosign"))
	s.fsm.OnDecisionBatch(s.cosigner.Enqueue)
	if s.auditLog, err = openAuditLog(s.cfg.DataDir, s.logger); err != nil {
		return err
	}
	if err := s.fsm.AttachAudit(registry.AuditLog{Log: s.auditLog}); err != nil {
		return err
	}
	s.peers = registry.NewPeers(s.tls.peer)
	s.apiAddr = s.cfg.AdvertiseAPI
	if s.apiAddr == "" {
		s.apiAddr = s.lis.grpc.Addr().String()
	}
	s.node, err = s.newNode(s.apiAddr)
	return err
}

// inCluster reports whether this node's Raft configuration lists any
// server: false for a node that was never bootstrapped nor added.
func (s *Server) inCluster(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	servers, err := s.node.Servers(ctx)
	return err != nil || len(servers) > 0
}

// Run serves until ctx ends or a part fails, then stops every part it
// started and closes the server. Every goroutine it starts ends before it
// returns.
func (s *Server) Run(ctx context.Context) error {
	s.logger.Info("trustfed server listening", "node", s.cfg.NodeID, "grpc", s.GRPCAddr(), "http", "https://"+s.HTTPAddr(),
		"raft", s.RaftAddr(), "data_dir", s.cfg.DataDir, "dev", s.cfg.Dev, "version", s.cfg.Version)
	if s.cfg.UnauditedDecisions {
		s.logger.Warn("-unaudited-decisions: checks are answered WITHOUT audit entries (measurement only)")
	}
	if !s.cfg.Bootstrap && s.cfg.Join == "" && !s.inCluster(ctx) {
		s.logger.Warn(registry.NoPeersHint, "node", s.cfg.NodeID, "data_dir", s.cfg.DataDir)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.reg.Run(gctx) })
	g.Go(func() error { verifyAuditLog(gctx, s.auditLog, s.fsm, s.logger); return nil })
	g.Go(func() error { return s.node.Run(gctx) })
	s.serveNetwork(gctx, g)
	if s.cfg.Join != "" {
		g.Go(func() error {
			return joinCluster(gctx, s.cfg.Join, s.tls.peer, s.cfg.NodeID, s.node.RaftAddr(), s.apiAddr, s.logger)
		})
	}
	if s.dev != nil {
		g.Go(func() error { s.dev.report(gctx, s); return nil })
	}
	err := g.Wait()
	if cerr := s.Close(); cerr != nil && err == nil {
		err = cerr
	}
	s.logger.Info("stopped", "node", s.cfg.NodeID)
	return err
}

// Close stops Raft and releases the listeners, the audit log and the
// connections to peers. It may be called more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.gateway != nil {
			errs = append(errs, s.gateway.Close())
		}
		if s.grpc != nil {
			s.grpc.Stop()
		}
		if s.http != nil {
			errs = append(errs, s.http.Close())
		}
		errs = append(errs, s.lis.close())
		if s.node != nil {
			if err := s.node.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close raft: %w", err))
			}
		}
		if s.peers != nil {
			s.peers.Close()
		}
		if s.auditLog != nil {
			errs = append(errs, s.auditLog.Close())
		}
		if s.tempDataDir {
			// Nothing of a temporary dev server outlives it: -dev -data-dir
			// DIR keeps the federation and the admin token instead.
			if err := os.RemoveAll(s.cfg.DataDir); err != nil {
				errs = append(errs, fmt.Errorf("remove the temporary dev data dir: %w", err))
			} else if s.logger != nil {
				s.logger.Info("removed the temporary dev data dir", "data_dir", s.cfg.DataDir)
			}
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// NodeID is this server's node id.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// DataDir is this server's data directory (in dev mode possibly a new
// temporary one).
func (s *Server) DataDir() string { return s.cfg.DataDir }

// AdminTokenFile is where -bootstrap keeps the first admin token.
func (s *Server) AdminTokenFile() string { return s.cfg.AdminTokenFile }

// CAFile is the cluster CA certificate clients trust.
func (s *Server) CAFile() string { return s.tls.files.CAFile }

// GRPCAddr is the address the gRPC listener is bound to.
func (s *Server) GRPCAddr() string { return s.lis.grpc.Addr().String() }

// HTTPAddr is the address the HTTPS (REST, /metrics) listener is bound to.
func (s *Server) HTTPAddr() string { return s.lis.http.Addr().String() }

// RaftAddr is the address the Raft transport is bound to.
func (s *Server) RaftAddr() string { return s.node.RaftAddr() }

// DebugAddr is the address of the profiles listener ("" without -debug-addr).
func (s *Server) DebugAddr() string {
	if s.lis.debug == nil {
		return ""
	}
	return s.lis.debug.Addr().String()
}
