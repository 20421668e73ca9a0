package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"github.com/trustfed/trustfed/revocation"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// addrsFile is written to the data dir once the server listens, so tools
// and tests can find ports chosen with :0.
type addrsFile struct {
	NodeID   string `json:"node_id"`
	GRPCAddr string `json:"grpc_addr"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	CACert   string `json:"ca_cert"`
}

func runServer(ctx context.Context, f serverFlags, out io.Writer) error {
	if err := f.resolve(); err != nil {
		return err
	}
	limits, err := f.limits.resolve()
	if err != nil {
		return err
	}
	logger, err := newLogger(f.logLevel, f.logFormat)
	if err != nil {
		return usageError{err}
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	files, err := tlsFiles(f)
	if err != nil {
		return err
	}
	serverTLS, err := attestation.ServerTLSConfig(files)
	if err != nil {
		return err
	}
	serverTLS.VerifyConnection = registry.RequireTrustfedIdentity
	peerTLS, err := attestation.ClientTLSConfig(files.CAFile, files.CertFile, files.KeyFile)
	if err != nil {
		return err
	}
	raftTLS := peerTLS.Clone()
	raftTLS.ClientCAs = peerTLS.RootCAs
	raftTLS.ClientAuth = tls.RequireAndVerifyClientCert
	var refused transportAudit
	gatewayTLS, err := attestation.ClientTLSConfig(files.CAFile, "", "")
	if err != nil {
		return err
	}

	grpcLis, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen -grpc-addr %s: %w", f.grpcAddr, err)
	}
	defer grpcLis.Close()
	httpLis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fmt.Errorf("listen -http-addr %s: %w", f.httpAddr, err)
	}
	defer httpLis.Close()
	var debugLis net.Listener
	if f.debugAddr != "" {
		if debugLis, err = net.Listen("tcp", f.debugAddr); err != nil {
			return fmt.Errorf("listen -debug-addr %s: %w", f.debugAddr, err)
		}
		defer debugLis.Close()
	}
	apiAddr := f.advertise
	if apiAddr == "" {
		apiAddr = grpcLis.Addr().String()
	}

	store := state.NewStore()
	fsm := state.NewFSM(store, attestation.Verifier{}, logger.With("component", "fsm"))
	auditLog, err := openAuditLog(f.dataDir)
	if err != nil {
		return err
	}
	defer auditLog.Close()
	if err := fsm.AttachAudit(registry.AuditLog{Log: auditLog}); err != nil {
		return err
	}
	peers := registry.NewPeers(peerTLS)
	defer peers.Close()
	ncfg := consensus.Config{
		NodeID:         f.nodeID,
		DataDir:        filepath.Join(f.dataDir, "raft"),
		BindAddr:       f.raftAddr,
		AdvertiseAddr:  f.advRaft,
		APIAddr:        apiAddr,
		Bootstrap:      f.bootstrap,
		StateMachine:   stateMachine{fsm},
		LeaderClient:   peers,
		Progress:       peers,
		TLS:            raftTLS,
		VerifyPeer:     raftPeerIdentity,
		OnRejectedConn: refused.raftRefused,
		Logger:         logger.With("component", "raft"),
	}
	if f.raftFast {
		ncfg.HeartbeatTimeout, ncfg.ElectionTimeout = 300*time.Millisecond, 300*time.Millisecond
		ncfg.LeaderLeaseTimeout, ncfg.CommitTimeout = 150*time.Millisecond, 5*time.Millisecond
		ncfg.PromotionStabilization = time.Second
	}
	node, err := consensus.New(ncfg)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	defer node.Close()

	cascades, err := newCascadeRunner(f, node, store, logger.With("component", "revocation"))
	if err != nil {
		return err
	}
	node.RegisterLeaderTask("cascades", cascades.Run)
	node.RegisterLeaderTask("sweeper", cascades.RunSweeper)
	memberCA, err := loadMemberCA(f, files, logger)
	if err != nil {
		return err
	}
	srv, err := registry.New(registry.Config{
		NodeID: f.nodeID, Store: store, Raft: node, Peers: peers, Verifier: attestation.Verifier{},
		Logger: logger.With("component", "registry"), Version: version, Acks: cascades,
		Audit: auditLog, AuditOrigin: f.auditOrigin, UnauditedDecisions: f.unauditedDecisions, AuditFault: fsm.AuditFault,
		CA: memberCA, MemberCertTTL: f.memberCertTTL, Limits: limits,
	})
	if err != nil {
		return err
	}
	refused.srv.Store(srv)
	if err := exportRaftMetrics(srv.MetricsRegisterer()); err != nil {
		return err
	}
	gs := grpc.NewServer(append(srv.ServerOptions(), grpc.Creds(srv.AuditedCredentials(credentials.NewTLS(serverTLS))))...)
	srv.Register(gs)
	gw, err := registry.NewGateway(ctx, dialable(grpcLis.Addr()), gatewayTLS, fsm.AuditFault, srv.Readiness)
	if err != nil {
		return err
	}
	defer gw.Close()
	httpMux := http.NewServeMux()
	httpMux.Handle("GET /metrics", srv.MetricsHandler()) // Prometheus, monitor or admin token
	httpMux.Handle("/", gw)
	hs := &http.Server{
		Handler:           httpMux,
		TLSConfig:         serverTLS,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          srv.HTTPErrorLog(logger), // TLS handshake failures are audited
	}

	keyReady := make(chan struct{})
	node.RegisterLeaderTask("signing-key", signingKeyTask(node, store, keyReady, logger))
	tokenReady := make(chan struct{})
	if f.bootstrap {
		secret, err := ensureBootstrapToken(f.tokenFile)
		if err != nil {
			return err
		}
		node.RegisterLeaderTask("bootstrap-token", bootstrapTokenTask(node, store, secret, f.tokenTTL, tokenReady, logger))
		if f.dev {
			adminKey := filepath.Join(f.dataDir, "admin.key")
			key, err := ensureDevAdminKey(adminKey)
			if err != nil {
				return err
			}
			adminReady := make(chan struct{})
			node.RegisterLeaderTask("dev-admin", devAdminTask(node, store, key, adminReady, logger))
			go func() {
				for _, ready := range []chan struct{}{keyReady, tokenReady, adminReady} {
					select {
					case <-ready:
					case <-ctx.Done():
						return
					}
				}
				printDevBanner(out, f, grpcLis.Addr(), httpLis.Addr(), node.RaftAddr(), files.CAFile, secret, bootstrapTokenExpiry(store, secret), adminKey)
			}()
		}
	}

	if err := writeAddrs(f, grpcLis.Addr(), httpLis.Addr(), node.RaftAddr(), files.CAFile); err != nil {
		return err
	}
	logger.Info("trustfed server listening", "node", f.nodeID, "grpc", grpcLis.Addr().String(), "http", "https://"+httpLis.Addr().String(),
		"raft", node.RaftAddr(), "data_dir", f.dataDir, "dev", f.dev, "version", version)

	node.RegisterLeaderTask("audit-checkpoints", srv.RunCheckpoints)
	if f.unauditedDecisions {
		logger.Warn("-unaudited-decisions: checks are answered WITHOUT audit entries (measurement only)")
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { verifyAuditLog(gctx, auditLog, fsm, logger); return nil })
	g.Go(func() error { return node.Run(gctx) })
	if debugLis != nil {
		g.Go(func() error { return serveDebug(gctx, debugLis, logger) })
	}
	g.Go(func() error {
		if err := gs.Serve(grpcLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := hs.ServeTLS(httpLis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http server: %w", err)
		}
		return nil
	})
	if f.join != "" {
		g.Go(func() error { return joinCluster(gctx, f.join, peerTLS, f.nodeID, node.RaftAddr(), apiAddr, logger) })
	}
	g.Go(func() error {
		<-gctx.Done()
		logger.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
		stopped := make(chan struct{})
		go func() { gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-sctx.Done():
			gs.Stop()
		}
		return nil
	})
	err = g.Wait()
	if cerr := node.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close raft: %w", cerr)
	}
	logger.Info("stopped", "node", f.nodeID)
	return err
}

// stateMachine adapts the registry FSM to consensus.StateMachine.
type stateMachine struct{ *state.FSM }

func (s stateMachine) Snapshot() (consensus.Snapshot, error) { return s.FSM.Snapshot() }

func tlsFiles(f serverFlags) (attestation.TLSFiles, error) {
	if f.tlsCA != "" {
		return attestation.TLSFiles{CAFile: f.tlsCA, CertFile: f.tlsCert, KeyFile: f.tlsKey}, nil
	}
	files, err := attestation.EnsureDevTLS(filepath.Join(f.dataDir, "tls"), f.nodeID, []string{"127.0.0.1", "::1", "localhost"}, time.Now())
	if err != nil {
		return files, fmt.Errorf("dev TLS material: %w", err)
	}
	return files, nil
}

// dialable turns a listener address into one the gateway can dial (an
// unspecified host becomes loopback).
func dialable(a net.Addr) string {
	host, port, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	default:
		return nil, fmt.Errorf("-log-format %q: want text or json", format)
	}
}

func writeAddrs(f serverFlags, grpcAddr, httpAddr net.Addr, raftAddr, caFile string) error {
	b, err := json.MarshalIndent(addrsFile{NodeID: f.nodeID, GRPCAddr: grpcAddr.String(), HTTPAddr: httpAddr.String(), RaftAddr: raftAddr, CACert: caFile}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(f.dataDir, "addrs.json")
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(path+".tmp", path)
}

// proposeFirst proposes a command that stores something a cluster holds
// once (signing key, bootstrap token); FailedPrecondition means another
// leader already stored it, which is success.
func proposeFirst(ctx context.Context, node *consensus.Node, msg proto.Message, meta state.EnvelopeMeta) error {
	if _, err := registry.Propose(ctx, node, msg, meta); err != nil && !errors.Is(err, state.ErrFailedPrecondition) {
		return err
	}
	return nil
}

// signingKeyTask makes sure the registry has a decision-signing key: a
// leader of a registry without one generates it and proposes it. Closes
// ready when the registry holds a key.
func signingKeyTask(node *consensus.Node, store *state.Store, ready chan struct{}, logger *slog.Logger) func(context.Context) error {
	var once sync.Once
	markReady := func() { once.Do(func() { close(ready) }) }
	return func(ctx context.Context) error {
		return retry(ctx, logger, "store registry signing key", func() error {
			if _, ok := store.Read().NewestSigningKey(); ok {
				markReady()
				return nil
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			id := attestation.Fingerprint(pub)
			err = proposeFirst(ctx, node, &commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: id, PrivateSeed: priv.Seed()}},
				state.EnvelopeMeta{Time: time.Now().UTC(), Principal: "system:bootstrap"})
			if err != nil {
				return err
			}
			logger.Info("registry signing key stored", "key_id", id)
			markReady()
			return nil
		})
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
			now := time.Now().UTC().Truncate(time.Second)
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

// newCascadeRunner builds the leader's revocation cascade runner.
func newCascadeRunner(f serverFlags, node *consensus.Node, store *state.Store, logger *slog.Logger) (*revocation.Runner, error) {
	var webhookTLS *tls.Config
	if f.webhookCA != "" {
		pem, err := os.ReadFile(f.webhookCA)
		if err != nil {
			return nil, fmt.Errorf("-webhook-ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-webhook-ca %s: no PEM certificate in it", f.webhookCA)
		}
		webhookTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if f.cascadeDeadline <= 0 || f.cascadeEscalateAt <= 0 || f.cascadeEscalateAt > 1 || f.cascadeWorkers <= 0 {
		return nil, errors.New("-cascade-deadline and -cascade-workers must be positive, -cascade-escalate-at within (0,1]")
	}
	return revocation.NewRunner(revocation.RunnerConfig{
		Store: store,
		Propose: func(ctx context.Context, cmd proto.Message) error {
			_, err := registry.Propose(ctx, node, cmd, state.EnvelopeMeta{Time: time.Now(), Principal: "system:revocation"})
			return err
		},
		Dispatch:   revocation.Config{Workers: f.cascadeWorkers, Deadline: f.cascadeDeadline, EscalateAt: f.cascadeEscalateAt},
		WebhookTLS: webhookTLS,
		Logger:     logger,
	})
}

// openAuditLog opens this node's copy of the audit log.
func openAuditLog(dataDir string) (*audit.Log, error) {
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
		slog.Error("audit log unreadable: moved aside, rebuilding it from the Raft log and snapshot", "path", aside, "error", err)
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
