package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/faultinject"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"github.com/trustfed/trustfed/revocation"
)

// startServices builds the revocation cascade runner and the registry's
// gRPC services on the gRPC listener's server.
func (s *Server) startServices() error {
	var err error
	if s.cascades, err = s.newCascadeRunner(); err != nil {
		return err
	}
	memberCA, err := loadMemberCA(s.cfg, s.tls.files, s.logger)
	if err != nil {
		return err
	}
	s.reg, err = registry.New(registry.Config{
		NodeID: s.cfg.NodeID, Store: s.store, Raft: s.node, Peers: s.peers, Verifier: attestation.Verifier{},
		Logger: s.logger.With("component", "registry"), Version: s.cfg.Version, Acks: s.cascades, Starting: s.bootstrapPending,
		Audit: s.auditLog, AuditOrigin: s.cfg.AuditOrigin, UnauditedDecisions: s.cfg.UnauditedDecisions, AuditFault: s.fsm.AuditFault,
		CA: memberCA, MemberCertTTL: s.cfg.MemberCertTTL, Limits: s.cfg.Limits, NodeKeys: s.nodeKeys,
		Divergence: s.divergence, CommitmentAt: s.fsm.CommitmentAtAs, Cosigner: s.cosigner,
		Operator: s.node,
	})
	if err != nil {
		return err
	}
	s.refused.srv.Store(s.reg)
	if err := exportRaftMetrics(s.reg.MetricsRegisterer()); err != nil {
		return err
	}
	if err := exportBuildInfo(s.reg.MetricsRegisterer(), s.cfg.Version, s.cfg.Revision); err != nil {
		return fmt.Errorf("build info metric: %w", err)
	}
	s.grpc = grpc.NewServer(append(s.reg.ServerOptions(), grpc.Creds(s.reg.AuditedCredentials(credentials.NewTLS(s.tls.server))))...)
	s.reg.Register(s.grpc)
	healthpb.RegisterHealthServer(s.grpc, healthServer{ready: s.reg.Readiness})
	return nil
}

// newCascadeRunner builds the leader's revocation cascade runner.
func (s *Server) newCascadeRunner() (*revocation.Runner, error) {
	webhookTLS, err := loadWebhookCA(s.cfg.WebhookCA)
	if err != nil {
		return nil, err
	}
	return revocation.NewRunner(revocation.RunnerConfig{
		Store: s.store,
		Propose: func(ctx context.Context, cmd proto.Message) error {
			return propose(ctx, s.node, cmd, state.EnvelopeMeta{Time: faultinject.Now().UTC(), Principal: "system:revocation"})
		},
		Dispatch:   revocation.Config{Workers: s.cfg.CascadeWorkers, Deadline: s.cfg.CascadeDeadline, EscalateAt: s.cfg.CascadeEscalateAt},
		WebhookTLS: webhookTLS,
		// The sending node's own endorsed key (s.reg exists by the time a
		// leader dispatches).
		WebhookSigner: func(now time.Time) (attestation.Signer, string, error) { return s.reg.WebhookSigner(now) },
		Logger:        s.logger.With("component", "revocation"),
	})
}

// loadWebhookCA returns the TLS configuration for members' webhook
// endpoints with the CAs of -webhook-ca on top of the system roots (nil
// without the flag: the dispatcher's default).
func loadWebhookCA(path string) (*tls.Config, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-webhook-ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("-webhook-ca %s: no PEM certificate in it", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// openAuditLog opens this node's copy of the audit log.
func openAuditLog(dataDir string, logger *slog.Logger) (*audit.Log, error) {
	dir := filepath.Join(dataDir, "audit")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create audit dir: %w", err)
	}
	path := filepath.Join(dir, "audit.db")
	// Appends are not fsynced one by one: every entry is derived from a
	// committed Raft entry, which is durable, and re-derived after a crash
	// (Raft replays its log since the last snapshot; the snapshot carries
	// the log and is taken after syncing it).
	l, err := audit.OpenWith(path, audit.Options{NoSync: true})
	if err != nil {
		// A file a power loss left unreadable, or one written in an older
		// layout (audit.ErrFormat), is rebuilt the same way: from the
		// snapshot and the Raft log. Keep it for inspection.
		aside := fmt.Sprintf("%s.unreadable-%d", path, time.Now().Unix())
		if rerr := os.Rename(path, aside); rerr != nil {
			return nil, fmt.Errorf("open the audit log: %w (and could not move it aside: %v)", err, rerr)
		}
		logger.Error("audit log unreadable: moved aside, rebuilding it from the Raft log and snapshot", "path", aside, "error", err)
		if l, err = audit.OpenWith(path, audit.Options{NoSync: true}); err != nil {
			return nil, fmt.Errorf("open the audit log: %w", err)
		}
	}
	return l, nil
}

// verifyAuditLog re-hashes the whole local audit log once after start, in
// the background (it does not delay serving): entries rewritten on disk
// while the node was down no longer hash to the stored tree. A failure is
// logged as an error and reported by /healthz and cluster status.
func verifyAuditLog(ctx context.Context, l *audit.Log, fsm *state.FSM, logger *slog.Logger) {
	start := time.Now()
	size := l.Size()
	err := l.VerifyPrefix(ctx, size)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		fsm.ReportAuditFault(fmt.Sprintf("the audit log does not verify: %v", err))
		logger.Error("audit log altered: its entries do not hash to its tree", "error", err)
		return
	}
	// The file's own hashes can be rewritten with its entries; the newest
	// signed checkpoint cannot.
	signed, err := fsm.CheckLatestCheckpoint()
	if err != nil {
		fsm.ReportAuditFault(fmt.Sprintf("the audit log does not verify against the signed checkpoint: %v", err))
		logger.Error("audit log altered: it disagrees with the newest signed checkpoint", "error", err)
		return
	}
	logger.Info("audit log verified", "entries", size, "signed_checkpoint_size", signed, "duration", time.Since(start).Round(time.Millisecond))
}

// loadMemberCA loads the CA that issues member certificates: -tls-ca with
// -tls-ca-key, or in dev mode the generated CA. Without a key the server
// runs but refuses IssueMemberCertificate (nil CA).
func loadMemberCA(cfg Config, files attestation.TLSFiles, logger *slog.Logger) (*attestation.CA, error) {
	keyFile := cfg.TLSCAKey
	if keyFile == "" {
		keyFile = files.CAKeyFile
	}
	if keyFile == "" {
		logger.Info("no -tls-ca-key: this server cannot issue member node certificates")
		return nil, nil
	}
	ca, err := attestation.LoadCA(files.CAFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-ca-key: %w", err)
	}
	return ca, nil
}
