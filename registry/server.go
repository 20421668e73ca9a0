package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/faultinject"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Raft is what the services need from the consensus layer; *consensus.Node
// satisfies it.
type Raft interface {
	Apply(ctx context.Context, cmd []byte) (consensus.ApplyResult, error)
	LinearizableRead(ctx context.Context) (uint64, error)
	ReadIndex(ctx context.Context) (uint64, error)
	IsLeader() bool
	LeaderTerm() uint64
	Leader() (consensus.Server, bool)
	LastContact() time.Duration
	AddNonvoter(ctx context.Context, id, raftAddr, apiAddr string) (consensus.Server, error)
	RemoveServer(ctx context.Context, id string) error
	Progress() consensus.Progress
	Servers(ctx context.Context) ([]consensus.Server, error)
	Status() consensus.Status
	// CaughtUp: the local state holds what the leader had committed when
	// this node started (consensus.Node.CaughtUp).
	CaughtUp() bool
	// LeaderChanged and LeaderCall bound calls to the leader: abandoned as
	// soon as the leader changes (consensus.Node.LeaderCall).
	LeaderChanged(leaderID string) <-chan struct{}
	LeaderCall(ctx context.Context, leaderID string) (context.Context, context.CancelFunc)
	// TransferLeadership makes this leader step down in favour of another
	// voter (a diverged leader must not lead).
	TransferLeadership(ctx context.Context) error
	// WaitApplied blocks until the local state machine applied index (a
	// server certifying a checkpoint waits for the state it names).
	WaitApplied(ctx context.Context, index uint64) error
}

// Config configures a Server.
type Config struct {
	NodeID string
	Store  *state.Store
	Raft   Raft
	// Peers reaches other servers (forwarding writes to the leader).
	Peers *Peers
	// Verifier checks signatures and passports before proposing (the FSM
	// checks them again with its own).
	Verifier state.Verifier
	// Clock stamps commands on the leader; nil = faultinject.Now (time.Now
	// outside the fault tests' build).
	Clock   func() time.Time
	Logger  *slog.Logger
	Version string
	// Acks takes members' event acknowledgements on the leader (the
	// revocation dispatcher); nil refuses AckEvent.
	Acks AckSink
	// Audit is this node's copy of the audit log (the FSM appends to it);
	// nil turns the audit API and decision auditing off (tests only).
	Audit *audit.Log
	// AuditOrigin names the log in its checkpoints (C2SP origin).
	AuditOrigin string
	// UnauditedDecisions answers checks without committing their audit
	// entries first: only for measuring what auditing costs (dev mode).
	UnauditedDecisions bool
	// AuditFault reports this replica's audit log fault ("" = none).
	AuditFault func() string
	// Starting reports start-up work this node is not ready without
	// ("storing the bootstrap admin token"; "" = none). nil: none.
	Starting func() string
	// Limits are the per-principal rate limits and stream caps of this
	// node (ratelimit.go); the zero value limits nothing.
	Limits Limits
	// CA is the federation CA, with its key, that issues member node
	// certificates (kept on each server's disk: -tls-ca-key). nil: this
	// server refuses IssueMemberCertificate.
	CA *attestation.CA
	// MemberCertTTL is the longest lifetime of a member certificate
	// (0 = DefaultMemberCertTTL).
	MemberCertTTL time.Duration
	// Divergence is whether this node's state diverged from the cluster's
	// (divergence.go); while it did, every call is refused. nil: never.
	Divergence *Divergence
	// CommitmentAt is this replica's commitment to the trust state at an
	// index, in the version of like, a commitment another server computed
	// there (state.FSM.CommitmentAtAs; nil like: the current version), for
	// the start-up verification and the certification of checkpoints; nil
	// skips them.
	CommitmentAt func(index uint64, like []byte) ([]byte, bool, error)
	// NodeKeys are this node's own signing keys (its data directory's
	// node-signing*.key files, or an HSM): one signs decisions once an
	// admin quorum endorsed its public key. nil: this node signs nothing
	// of its own (tests).
	NodeKeys attestation.Keyring
	// Cosigner evaluates and signs the decision batches this replica
	// applies (cosign.go; wire it as the FSM's OnDecisionBatch before Raft
	// starts). nil: decisions are signed by the answering node alone.
	Cosigner *Cosigner
	// Operator takes backups and hands leadership over (consensus.Node);
	// nil: SaveSnapshot and TransferLeadership answer UNIMPLEMENTED.
	Operator Operator
}

// Operator is what the operators' cluster calls need of the Raft node
// beyond Raft: a snapshot to back up, and a leadership transfer to a
// chosen voter.
type Operator interface {
	OpenSnapshot(ctx context.Context) (consensus.SnapshotInfo, io.ReadCloser, error)
	TransferLeadershipTo(ctx context.Context, id, raftAddr string) error
}

// MaxMessageSize bounds every gRPC message received.
const MaxMessageSize = 1 << 20

// Server is the core the trustfed gRPC services share: the state, Raft,
// the authenticator, the audit batcher, the limits and the metrics. Each
// service is its own struct holding it (registry_service.go,
// admin_service.go, …); Register registers them all.
type Server struct {
	cfg   Config
	store *state.Store
	raft  Raft
	auth  authenticator
	log   *slog.Logger
	clock func() time.Time
	// key caches the parsed decision-signing key.
	key atomic.Pointer[cachedKey]
	// audit is nil when the server keeps no audit log.
	audit   *audit.Log
	batcher *auditBatcher
	// auditStreams carries a follower's audit batches to the leader
	// (audit_stream.go).
	auditStreams *auditStreams
	// limiter holds rate-limit buckets, stream slots and the bound on
	// audited transport refusals (ratelimit.go, tls_audit.go).
	limiter *limiter
	// metrics are served at GET /metrics (metrics.go).
	metrics *metrics
	// verified: the start-up verification of the state is done
	// (divergence.go).
	verified atomic.Bool
	// servers caches the configuration cosigning asks (certify.go).
	serversMu sync.Mutex
	servers   []consensus.Server
	serversAt time.Time
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if cfg.Store == nil {
		errs = append(errs, errors.New("registry config: Store is required"))
	}
	if cfg.Raft == nil {
		errs = append(errs, errors.New("registry config: Raft is required"))
	}
	if cfg.Peers == nil {
		errs = append(errs, errors.New("registry config: Peers is required"))
	}
	if cfg.Verifier == nil {
		errs = append(errs, errors.New("registry config: Verifier is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("registry config: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = faultinject.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AuditFault == nil {
		cfg.AuditFault = func() string { return "" }
	}
	if cfg.Audit != nil && cfg.AuditOrigin == "" {
		return nil, errors.New("registry config: AuditOrigin is required with Audit")
	}
	if err := cfg.Limits.Validate(); err != nil {
		return nil, fmt.Errorf("registry config: %w", err)
	}
	s := &Server{
		cfg:   cfg,
		store: cfg.Store,
		raft:  cfg.Raft,
		auth:  authenticator{store: cfg.Store, clock: cfg.Clock},
		log:   cfg.Logger,
		clock: cfg.Clock,
		audit: cfg.Audit,
	}
	// Without a commitment to compare there is no start-up verification.
	s.verified.Store(cfg.CommitmentAt == nil)
	s.batcher = newAuditBatcher(s.commitAudit, cfg.Logger.With("component", "audit"))
	s.auditStreams = newAuditStreams(cfg.Peers, cfg.Raft, cfg.Logger.With("component", "audit"))
	s.batcher.commitMerged = s.commitMergedAudit
	if cfg.Cosigner != nil {
		s.batcher.certify = s.certifyCommitted
	}
	s.limiter = newLimiter(cfg.Limits, time.Now)
	s.metrics = newMetrics(s)
	s.batcher.observe = s.metrics.batchCommitted
	return s, nil
}

// Run runs the server's background work (the audit batcher, the start-up
// verification of the state and the divergence report, divergence.go)
// until ctx ends. Start it before serving.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.reportDivergence(ctx) })
	wg.Go(func() { s.verifyAtStart(ctx) })
	wg.Go(func() { s.checkStateHash(ctx) })
	if s.cfg.Cosigner != nil {
		wg.Go(func() { s.cfg.Cosigner.Run(ctx) })
		if s.cfg.Divergence != nil {
			wg.Go(func() { s.checkDissents(ctx) })
		}
	}
	s.batcher.Run(ctx)
	s.auditStreams.Close() // no batch is out any more
	wg.Wait()
	return nil
}

// ServerOptions are the options every gRPC server of ours needs: the
// interceptor chain (call metrics first, so refused calls count too) and
// message limits. Add transport credentials to them.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.metrics.grpc.UnaryServerInterceptor(), s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.metrics.grpc.StreamServerInterceptor(), s.streamInterceptor),
		grpc.MaxRecvMsgSize(MaxMessageSize),
	}
}

// Register registers every service on gs.
func (s *Server) Register(gs *grpc.Server) {
	trustfedv1.RegisterRegistryServiceServer(gs, &registryService{Server: s})
	trustfedv1.RegisterAdminServiceServer(gs, &adminService{Server: s})
	trustfedv1.RegisterClusterServiceServer(gs, &clusterService{Server: s})
	trustfedv1.RegisterMembershipServiceServer(gs, &membershipService{Server: s})
	trustfedv1.RegisterCascadeServiceServer(gs, &cascadeService{Server: s})
	trustfedv1.RegisterAuditServiceServer(gs, &auditService{Server: s})
	trustfedv1.RegisterAccessServiceServer(gs, &accessService{Server: s})
	peerv1.RegisterPeerServiceServer(gs, &peerService{Server: s})
	if s.metrics != nil {
		s.metrics.grpc.InitializeMetrics(gs) // every method's series from zero
	}
}

// unaryInterceptor is the one place every unary call passes: authenticate,
// authorise (role, then the organisations the request acts for), limit,
// forward writes to the leader, handle, map errors.
func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if isHealth(info.FullMethod) {
		return handler(ctx, req) // readiness, like GET /readyz: public, unaudited, answered in every state
	}
	start := time.Now()
	if err := s.refuseDiverged(info.FullMethod); err != nil {
		return nil, err
	}
	if isPublic(info.FullMethod) {
		return s.handlePublic(ctx, req, info, handler)
	}
	ctx, p, err := s.authenticateFresh(ctx, info.FullMethod, req)
	if err == nil {
		err = authorize(info.FullMethod, p)
	}
	var about []string
	if err == nil {
		if err = authorizeRequest(info.FullMethod, p, req); err != nil {
			about = requestedOrgs(info.FullMethod, req)
		}
	}
	if err != nil {
		return nil, s.refuse(ctx, info.FullMethod, p, err, about...)
	}
	resp, forwarded, err := s.serve(ctx, req, info, handler, p)
	if s.log.Enabled(ctx, slog.LevelDebug) { // as Debug asks; its arguments alone cost allocations
		s.log.Debug("request", "method", info.FullMethod, "principal", p.ID, "forwarded", forwarded, "duration", time.Since(start), "error", err)
	}
	return resp, err
}

// serve runs an admitted call: rate limit, then the leader (writes reaching
// a follower) or the handler; errors become statuses.
func (s *Server) serve(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler, p Principal) (any, bool, error) {
	if err := s.limit(ctx, info.FullMethod, p, req); err != nil {
		return nil, false, toStatus(s.log, info.FullMethod, err)
	}
	ctx = withPrincipal(ctx, p)
	resp, forwarded, err := s.forward(ctx, info.FullMethod, req)
	if !forwarded {
		resp, err = handler(ctx, req)
	}
	return resp, forwarded, toStatus(s.log, info.FullMethod, err)
}

// handlePublic serves a method that needs no credentials (public keys,
// signed tree heads, member challenges); writes among them go to the leader
// like any other.
func (s *Server) handlePublic(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.caughtUp(); err != nil {
		return nil, s.refuse(ctx, info.FullMethod, Principal{ID: "anonymous"}, err)
	}
	resp, _, err := s.serve(ctx, req, info, handler, Principal{ID: "anonymous", Role: RoleNone})
	return resp, err
}

// streamInterceptor authenticates and authorises a stream by role; the
// handler checks the organisations its first message acts for
// (authorizeRequest).
func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if isHealth(info.FullMethod) {
		return handler(srv, ss)
	}
	if err := s.refuseDiverged(info.FullMethod); err != nil {
		return err
	}
	_, p, err := s.authenticateFresh(ss.Context(), info.FullMethod, nil)
	if err == nil {
		err = authorize(info.FullMethod, p)
	}
	if err != nil {
		return s.refuse(ss.Context(), info.FullMethod, p, err)
	}
	if err := s.limit(ss.Context(), info.FullMethod, p, nil); err != nil {
		return toStatus(s.log, info.FullMethod, err)
	}
	return toStatus(s.log, info.FullMethod, handler(srv, &principalStream{ServerStream: ss, ctx: withPrincipal(ss.Context(), p), method: info.FullMethod, server: s}))
}

// authenticateFresh authenticates the caller against state that includes
// every write committed before the call arrived: a token revoked, a node
// removed or an organisation suspended a moment ago on another server is
// refused here too. The leader's state already holds every acknowledged
// write; a follower first waits for the leader's commit index (a read
// index), and the handler's first linearizable read reuses that barrier.
// A write needs no barrier here: a follower forwards it, and the leader
// authenticates the caller again.
//
// A node that has not caught up with the leader's log since it started
// answers no one but its peers (ErrCatchingUp, UNAVAILABLE): its state may
// lack the very token or member node the caller presents, and "unknown
// token" would be a lie, not a refusal.
//
// Two calls authenticate against this node's local state instead, so they
// work without a leader (an election, a minority partition): Status, which
// describes this node only, and a CONSISTENCY_STALE read, whose caller
// accepts state as old as its max staleness (withinStaleness; a credential
// revoked within that window may still read).
func (s *Server) authenticateFresh(ctx context.Context, method string, req any) (context.Context, Principal, error) {
	p, err := s.auth.authenticate(ctx)
	if err == nil && p.Role == RoleNode {
		return ctx, p, nil
	}
	if cerr := s.caughtUp(); cerr != nil {
		if err == nil && method == trustfedv1.ClusterService_Status_FullMethodName {
			return ctx, p, nil // how an operator sees the catching up: node-local, read-only
		}
		return ctx, p, cerr
	}
	if err != nil || writeMethods[method] || s.raft.IsLeader() || method == trustfedv1.ClusterService_Status_FullMethodName {
		return ctx, p, err
	}
	if requestConsistency(req) == trustfedv1.Consistency_CONSISTENCY_STALE {
		return ctx, p, s.withinStaleness(ctx)
	}
	if _, err := s.raft.LinearizableRead(ctx); err != nil {
		return ctx, p, fmt.Errorf("authenticate against the committed state: %w", err)
	}
	p, err = s.auth.authenticate(ctx)
	return context.WithValue(ctx, freshReadKey{}, &atomic.Bool{}), p, err
}

// freshReadKey marks a request whose authentication already waited for a
// read index; the first linearizable read of its handler needs no other.
type freshReadKey struct{}

type principalStream struct {
	grpc.ServerStream
	ctx    context.Context
	method string
	server *Server
	// checked: the first request message passed authorizeRequest.
	checked bool
}

// RecvMsg receives a request and, for the first one, checks the
// organisations it acts for like the unary interceptor does.
func (p *principalStream) RecvMsg(m any) error {
	if err := p.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !p.checked {
		p.checked = true
		pr, _ := PrincipalFrom(p.ctx)
		if err := authorizeRequest(p.method, pr, m); err != nil {
			return p.server.refuse(p.ctx, p.method, pr, err, requestedOrgs(p.method, m)...)
		}
	}
	return nil
}

func (p *principalStream) Context() context.Context { return p.ctx }

// propose stamps a command with the leader's time, the request id and the
// principal, replicates it (Propose) and returns the index it was applied at.
func (s *Server) propose(ctx context.Context, cmd proto.Message, requestID string) (uint64, error) {
	r, _, err := s.proposeInTerm(ctx, cmd, requestID)
	return r.Index, err
}

// proposeInTerm is propose returning the state machine's whole result and
// the Raft term the entry was committed in (see consensus.ApplyResult.Term).
func (s *Server) proposeInTerm(ctx context.Context, cmd proto.Message, requestID string) (state.Result, uint64, error) {
	p, _ := PrincipalFrom(ctx)
	return proposeCommitted(ctx, s.raft, cmd, state.EnvelopeMeta{RequestID: requestID, Time: s.clock(), Principal: p.ID})
}

// proposeWithID proposes cmd under the caller's request id (or a new one).
func (s *Server) proposeWithID(ctx context.Context, cmd proto.Message, given string) error {
	rid, err := requestID(given)
	if err != nil {
		return err
	}
	_, err = s.propose(ctx, cmd, rid)
	return err
}

// byID is one object read by its id: the id's field name and value, how
// the id is checked, how it is looked up, and the NotFound message (a format
// with one verb for the id).
type byID[T any] struct {
	field, id, notFound string
	validate            func(field, id string) error
	lookup              func(r *state.Reader, id string) (T, bool)
}

// readOne is the start of every Get-by-id handler: validate the id, read the
// state at consistency c, look the object up (NOT_FOUND naming the field).
func readOne[T any](ctx context.Context, s *Server, c trustfedv1.Consistency, q byID[T]) (T, *state.Reader, *trustfedv1.ReadMeta, error) {
	var zero T
	if err := q.validate(q.field, q.id); err != nil {
		return zero, nil, nil, err
	}
	r, meta, err := s.read(ctx, c)
	if err != nil {
		return zero, nil, nil, err
	}
	v, ok := q.lookup(r, q.id)
	if !ok {
		return zero, nil, nil, state.NotFound(q.field, q.notFound, q.id)
	}
	return v, r, meta, nil
}

// read returns a view of the state as fresh as the consistency asks for.
func (s *Server) read(ctx context.Context, c trustfedv1.Consistency) (*state.Reader, *trustfedv1.ReadMeta, error) {
	if err := s.caughtUp(); err != nil {
		return nil, nil, err // even a stale read would answer "not found" for what exists
	}
	provided := trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE
	switch c {
	case trustfedv1.Consistency_CONSISTENCY_UNSPECIFIED, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE:
		if fresh, ok := ctx.Value(freshReadKey{}).(*atomic.Bool); ok && fresh.CompareAndSwap(false, true) {
			break // the barrier the interceptor waited for, after the call arrived
		}
		if _, err := s.raft.LinearizableRead(ctx); err != nil {
			return nil, nil, fmt.Errorf("linearizable read: %w", err)
		}
	case trustfedv1.Consistency_CONSISTENCY_STALE:
		if err := s.withinStaleness(ctx); err != nil {
			return nil, nil, err
		}
		provided = c
	default:
		return nil, nil, state.Invalid("consistency", "unknown consistency %d", int32(c))
	}
	r := s.store.Read()
	return r, s.readMeta(r, provided), nil
}

func (s *Server) readMeta(r *state.Reader, provided trustfedv1.Consistency) *trustfedv1.ReadMeta {
	meta := &trustfedv1.ReadMeta{
		Index:       r.Index(),
		Consistency: provided,
		LastContact: durationpb.New(s.raft.LastContact()),
		NodeId:      s.cfg.NodeID,
	}
	if l, ok := s.raft.Leader(); ok {
		meta.LeaderId, meta.KnownLeader = l.ID, true
	}
	return meta
}

// auditsDecisions: every decision this server answers is committed to the
// audit log first.
func (s *Server) auditsDecisions() bool { return s.audit != nil && !s.cfg.UnauditedDecisions }

// readForDecision is read for a decision. On the ready leader of term T, a
// linearizable decision that will be audited reads local state without a
// read-index round: its audit entry must then be committed by this node in
// term T before it is answered (auditBatcher.Append with T), which proves
// the read was fresh (consensus/DESIGN.md, "Reads through the log"). It
// returns T, or 0 when the decision took the ordinary read.
func (s *Server) readForDecision(ctx context.Context, c trustfedv1.Consistency) (*state.Reader, *trustfedv1.ReadMeta, uint64, error) {
	linearizable := c == trustfedv1.Consistency_CONSISTENCY_UNSPECIFIED || c == trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE
	if linearizable && s.auditsDecisions() {
		if term := s.raft.LeaderTerm(); term != 0 {
			r := s.store.Read()
			return r, s.readMeta(r, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE), term, nil
		}
	}
	r, meta, err := s.read(ctx, c)
	return r, meta, 0, err
}

// requestID returns the caller's idempotency key, or a fresh one.
func requestID(given string) (string, error) {
	if given != "" {
		if len(given) > 128 {
			return "", state.Invalid("request_id", "is longer than 128 characters")
		}
		for i := 0; i < len(given); i++ {
			if given[i] < 0x21 || given[i] > 0x7e {
				return "", state.Invalid("request_id", "must be printable ASCII without spaces")
			}
		}
		return given, nil
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate request id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
