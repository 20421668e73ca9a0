package registry

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Operational metrics, served at GET /metrics in the Prometheus text
// format to monitor (and admin) tokens. They carry no organisation ids:
// which organisations interact is the audit log's business, read under its
// own access rules; metrics say how the node is doing. docs/operations.md
// lists them.
type metrics struct {
	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics

	decisions      *prometheus.CounterVec
	decisionLevels *prometheus.CounterVec
	authFailures   *prometheus.CounterVec
	unavail        *prometheus.CounterVec
	tlsRefused     *prometheus.CounterVec
	auditBatches   prometheus.Histogram
	auditCommit    prometheus.Histogram
	auditFailed    prometheus.Counter
	metricsRefused prometheus.Counter
	certBatches    *prometheus.CounterVec
	redecidedN     prometheus.Counter
}

// latencyBuckets span a fast local call (100 µs) to a slow cluster round
// (10 s).
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 16)

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(latencyBuckets))),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustfed_decisions_total",
			Help: "Interaction checks answered by this node, by decision and (for a denial) its first reason code.",
		}, []string{"decision", "reason"}),
		decisionLevels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustfed_decisions_by_level_total",
			Help: "Interaction checks answered by this node, by the interaction's effective level (the lower of the two organisations' levels, 0-4).",
		}, []string{"level"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustfed_auth_failures_total",
			Help: "Calls this node refused authentication or authorisation (each is also an AUTH_FAILURE audit entry), by gRPC code.",
		}, []string{"code"}),
		unavail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustfed_unavailable_total",
			Help: "Calls this node did not serve because it was unavailable (catching up with the log, no ready leader reachable, leader changed), by reason. Not authentication failures.",
		}, []string{"reason"}),
		tlsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustfed_tls_refusals_total",
			Help: "Connections this node refused at the TLS handshake (untrusted or missing client certificate), by listener.",
		}, []string{"listener"}),
		auditBatches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trustfed_audit_batch_events",
			Help:    "Audit events (decisions, auth failures) per committed APPEND_AUDIT batch sent by this node.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11), // 1 .. 1024 (maxAuditBatch)
		}),
		auditCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "trustfed_audit_batch_commit_seconds",
			Help:    "Time to commit one audit batch through Raft (or through the leader from a follower).",
			Buckets: latencyBuckets,
		}),
		auditFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustfed_audit_batch_failures_total",
			Help: "Audit batches that were not committed (their checks were not answered).",
		}),
		certBatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trustfed_decision_batches_total",
			Help: "Decision batches this node collected a quorum certificate for (outcome=certified; decisions the head refuses are still not answered), or could not (outcome=not_certified: their checks were not answered).",
		}, []string{"outcome"}),
		metricsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustfed_metrics_scrapes_refused_total",
			Help: "GET /metrics requests refused for a missing, unknown or unauthorised token.",
		}),
		redecidedN: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trustfed_decisions_redecided_total",
			Help: "Checks decided a second time on a newer state because a write overtook their first decision before its audit batch (the signers refused it as stale).",
		}),
	}
	m.certBatches.WithLabelValues("certified")
	m.certBatches.WithLabelValues("not_certified")
	if c := s.cfg.Cosigner; c != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "trustfed_cosign_batches_signed_total",
			Help: "Decision batches (of any node) this node re-evaluated and signed, vouching for every decision.",
		}, func() float64 { return float64(c.signed.Load()) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "trustfed_cosign_batches_refused_total",
			Help: "Decision batches this node did not vouch for in full: it refused some of their decisions (one that does not re-derive on its state, that a write overtook, a malformed one) or all (a state no longer kept, no endorsed key) (WARN log with the reason).",
		}, func() float64 { return float64(c.refused.Load()) }))
	}
	for l := range 5 {
		m.decisionLevels.WithLabelValues(strconv.Itoa(l)) // every level's series from zero
	}
	for _, r := range unavailableReasons {
		m.unavail.WithLabelValues(r) // every reason's series from zero
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.decisions, m.decisionLevels, m.authFailures, m.unavail, m.tlsRefused, m.auditBatches, m.auditCommit, m.auditFailed, m.metricsRefused, m.certBatches, m.redecidedN,
		nodeCollector{s},
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "trustfed_audit_auth_failures_dropped_total",
			Help: "Auth-failure audit events dropped because the audit queue was full.",
		}, func() float64 { return float64(s.batcher.dropped.Load()) }),
	)
	return m
}

// MetricsRegisterer registers more collectors on the registry GET /metrics
// serves (the Raft library's own measurements: cmd/trustfed).
func (s *Server) MetricsRegisterer() prometheus.Registerer { return s.metrics.reg }

// The recording methods do nothing on a nil *metrics (servers some unit
// tests build by hand).

// certified counts a decision batch's certification outcome.
func (m *metrics) certified(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.certBatches.WithLabelValues("certified").Inc()
	} else {
		m.certBatches.WithLabelValues("not_certified").Inc()
	}
}

// redecided counts a check decided again after its first decision was
// refused as stale.
func (m *metrics) redecided() {
	if m != nil {
		m.redecidedN.Inc()
	}
}

// decided counts an answered check.
func (m *metrics) decided(resp *trustfedv1.CheckInteractionResponse) {
	if m == nil {
		return
	}
	reason := ""
	if resp.GetDecision() != trustfedv1.Decision_DECISION_ALLOW && len(resp.GetReasons()) > 0 {
		reason = resp.Reasons[0].GetCode()
	}
	m.decisions.WithLabelValues(decisionLabel(resp.GetDecision()), reason).Inc()
	m.decisionLevels.WithLabelValues(strconv.FormatUint(uint64(resp.GetEffectiveLevel()), 10)).Inc()
}

func decisionLabel(d trustfedv1.Decision) string {
	switch d {
	case trustfedv1.Decision_DECISION_ALLOW:
		return "allow"
	case trustfedv1.Decision_DECISION_DENY:
		return "deny"
	default:
		return "unspecified"
	}
}

// refused counts a refused call by its status code.
func (m *metrics) refused(st error) {
	if m == nil {
		return
	}
	m.authFailures.WithLabelValues(status.Code(st).String()).Inc()
}

// unavailable counts a call not served for an availability reason.
func (m *metrics) unavailable(reason string) {
	if m == nil {
		return
	}
	m.unavail.WithLabelValues(reason).Inc()
}

// tlsRefusal counts a connection refused at a listener's TLS handshake.
func (m *metrics) tlsRefusal(listener string) {
	if m == nil {
		return
	}
	m.tlsRefused.WithLabelValues(listener).Inc()
}

// batchCommitted records one audit batch's size, time and outcome.
func (m *metrics) batchCommitted(events int, took time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.auditFailed.Inc()
		return
	}
	m.auditBatches.Observe(float64(events))
	m.auditCommit.Observe(took.Seconds())
}

// nodeCollector reports, at each scrape, the node's Raft, audit and cascade
// state: one read of each for the whole scrape.
type nodeCollector struct{ s *Server }

var (
	descRaftState = prometheus.NewDesc("trustfed_raft_state",
		"1 for this node's Raft state (Leader, Follower, Candidate, Shutdown), 0 for the others.", []string{"state"}, nil)
	descRaftReady = prometheus.NewDesc("trustfed_raft_ready_leader",
		"1 if this node is the leader and has applied every entry of its term (it answers reads and writes).", nil, nil)
	descRaftHasLeader = prometheus.NewDesc("trustfed_raft_has_leader",
		"1 if this node knows a leader.", nil, nil)
	descRaftCaughtUp = prometheus.NewDesc("trustfed_raft_caught_up",
		"1 once this node has applied the log as far as the leader had committed it when the node started (before that it answers UNAVAILABLE).", nil, nil)
	descRaftTerm = prometheus.NewDesc("trustfed_raft_term",
		"This node's current Raft term.", nil, nil)
	descRaftCommit = prometheus.NewDesc("trustfed_raft_commit_index",
		"The highest Raft index this node knows to be committed.", nil, nil)
	descRaftApplied = prometheus.NewDesc("trustfed_raft_applied_index",
		"The highest Raft index applied to this node's state.", nil, nil)
	descRaftLast = prometheus.NewDesc("trustfed_raft_last_log_index",
		"The last index in this node's Raft log.", nil, nil)
	descRaftContact = prometheus.NewDesc("trustfed_raft_last_contact_seconds",
		"Time since this follower last heard from the leader (0 on the leader).", nil, nil)
	descAuditEntries = prometheus.NewDesc("trustfed_audit_log_entries",
		"Entries in this node's copy of the audit log.", nil, nil)
	descAuditFault = prometheus.NewDesc("trustfed_audit_fault",
		"1 if this node's audit log disagrees with its signed checkpoints or hashes (see trustfed status).", nil, nil)
	descDiverged = prometheus.NewDesc("trustfed_diverged",
		"1 if this node's state diverged from the cluster's: it answers nothing until repaired (docs/operations.md).", nil, nil)
	descCascadesOpen = prometheus.NewDesc("trustfed_cascades_incomplete",
		"Revocation cascades some partner has not acknowledged yet.", nil, nil)
	descCascadePending = prometheus.NewDesc("trustfed_cascade_deliveries_unacknowledged",
		"Partner notifications of incomplete cascades not acknowledged yet.", nil, nil)
	descCascadeAge = prometheus.NewDesc("trustfed_cascade_oldest_incomplete_age_seconds",
		"Age of the oldest incomplete cascade (0 if none); AG-783 wants every partner's acknowledgement within 300 s.", nil, nil)
)

var raftStates = []string{"Leader", "Follower", "Candidate", "Shutdown"}

func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRaftState, descRaftReady, descRaftHasLeader, descRaftCaughtUp, descRaftTerm, descRaftCommit,
		descRaftApplied, descRaftLast, descRaftContact, descAuditEntries, descAuditFault, descDiverged, descCascadesOpen, descCascadePending, descCascadeAge} {
		ch <- d
	}
}

func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	st := c.s.raft.Status()
	for _, name := range raftStates {
		gauge(descRaftState, boolValue(st.State == name), name)
	}
	gauge(descRaftReady, boolValue(st.Ready))
	gauge(descRaftHasLeader, boolValue(st.HasLeader))
	gauge(descRaftCaughtUp, boolValue(st.CaughtUp))
	gauge(descRaftTerm, float64(st.Term))
	gauge(descRaftCommit, float64(st.CommitIndex))
	gauge(descRaftApplied, float64(st.AppliedIndex))
	gauge(descRaftLast, float64(st.LastLogIndex))
	gauge(descRaftContact, st.LastContact.Seconds())
	gauge(descAuditEntries, float64(c.s.auditSize()))
	gauge(descAuditFault, boolValue(c.s.cfg.AuditFault() != ""))
	_, diverged := c.s.cfg.Divergence.Status()
	gauge(descDiverged, boolValue(diverged))

	var pending uint64
	var oldest time.Time
	open := c.s.store.Read().IncompleteCascades()
	for _, cas := range open {
		pending += uint64(len(cas.GetDeliveries())) - min(uint64(cas.GetAcked()), uint64(len(cas.GetDeliveries())))
		if t := cas.GetStartTime().AsTime(); oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	gauge(descCascadesOpen, float64(len(open)))
	gauge(descCascadePending, float64(pending))
	age := 0.0
	if !oldest.IsZero() {
		age = max(0, c.s.clock().Sub(oldest).Seconds())
	}
	gauge(descCascadeAge, age)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsAuthWait bounds the read-index round a follower makes before it
// checks a scraper's token.
const metricsAuthWait = 2 * time.Second

// MetricsHandler serves GET /metrics (Prometheus text format) to a bearer
// token of the monitor or admin role; anything else gets 401 (no or a bad
// token) or 403 (another role), audited like a refused API call.
//
// Like an API call, a follower that accepts the token checks it again
// against state that holds every committed write (after a read index), so
// a token revoked anywhere is refused here too. Unlike an API call, when no leader answers within
// metricsAuthWait it checks the token against its own state and serves:
// metrics must stay readable when the cluster has no leader, which is
// when they are needed most (docs/operations.md says so).
func (s *Server) MetricsHandler() http.Handler {
	serve := promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{s.log}, Timeout: 10 * time.Second})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		const method = "GET /metrics"
		header := r.Header.Get("Authorization")
		p, err := s.auth.fromToken(header)
		// As authenticateFresh: a token this node does not accept is
		// refused at once (no leader round for a stranger's request); one
		// it accepts is checked again after a read index on a follower.
		if err == nil && !s.raft.IsLeader() {
			ctx, cancel := context.WithTimeout(r.Context(), metricsAuthWait)
			if _, rerr := s.raft.LinearizableRead(ctx); rerr != nil {
				s.log.Info("metrics: no read index, checking the token against this node's state", "error", rerr)
			}
			cancel()
			p, err = s.auth.fromToken(header)
		}
		if err != nil {
			if cerr := s.caughtUp(); cerr != nil {
				// Unknown here may only mean not applied yet: no 401 for it.
				s.metrics.unavailable(unavailCatchingUp)
				w.Header().Set("Retry-After", readinessRetryAfter)
				http.Error(w, status.Convert(toStatus(s.log, method, cerr)).Message(), http.StatusServiceUnavailable)
				return
			}
		}
		if err == nil && p.Role != RoleMonitor && p.Role != RoleAdmin {
			err = fmt.Errorf("%w: role %s may not read metrics (a monitor or admin token may)", ErrPermissionDenied, p.Role)
		}
		if err != nil {
			st := toStatus(s.log, method, err)
			s.metrics.metricsRefused.Inc()
			ctx := r.Context()
			if ap, perr := netip.ParseAddrPort(r.RemoteAddr); perr == nil {
				ctx = peer.NewContext(ctx, &peer.Peer{Addr: net.TCPAddrFromAddrPort(ap)})
			}
			s.auditAuthFailure(ctx, method, p, st)
			code := http.StatusForbidden
			if status.Code(st) == codes.Unauthenticated {
				code = http.StatusUnauthorized
				w.Header().Set("WWW-Authenticate", restRealm)
			}
			http.Error(w, status.Convert(st).Message(), code)
			return
		}
		serve.ServeHTTP(w, r)
	})
}

// slogPrinter lets promhttp log its errors through slog.
type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics: " + fmt.Sprint(v...)) }
