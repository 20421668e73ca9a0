package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// The dashboard's live feed (docs/dashboard.md).
const (
	// uiMaxStreams bounds the feeds one node serves at once.
	uiMaxStreams = 64
	// uiTick is how often a feed checks its token again, sends a metrics
	// sample (to the roles that may read metrics) and looks for a state a
	// snapshot restore swapped in.
	uiTick = time.Second
	// uiMinGap coalesces change notices: a busy registry applies many
	// commands a second, the dashboard needs a notice, not each one.
	uiMinGap = 250 * time.Millisecond
	// uiPing keeps an idle feed's connection alive through proxies.
	uiPing = 15 * time.Second
	// uiWriteWait bounds one write to a slow or gone browser.
	uiWriteWait = 10 * time.Second
)

// UIEvents serves GET /ui/events, the web dashboard's live feed: a
// server-sent event stream (text/event-stream) for a bearer token of any
// role. It never carries registry data, only what tells the page to read
// again through the REST API, where the authorisation table decides:
//
//   - "hello": who the token is (principal, role, organisation) and the API
//     methods the authorisation table lets its role call, so the page shows
//     only what the token may read;
//   - "change": the registry applied commands (its Raft index), driven by the
//     state store's own change notification, at most one per uiMinGap;
//   - "metrics": checks answered by decision and deny reason and by
//     effective level, and the CheckInteraction latency histogram, each
//     second, to the roles that may read GET /metrics (monitor, admin);
//   - "unauthenticated": the token was revoked or expired; the feed ends.
//
// The browser sends the token in the Authorization header (fetch), never in
// the URL.
type UIEvents struct {
	s       *Server
	gather  prometheus.Gatherer
	streams atomic.Int32
	done    chan struct{}
	once    sync.Once
}

// UIEvents returns the handler of the dashboard's live feed. Close ends
// every feed it serves (an http.Server's Shutdown waits for none).
func (s *Server) UIEvents() *UIEvents {
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.metrics.decisions, s.metrics.decisionLevels, s.metrics.grpc)
	return &UIEvents{s: s, gather: reg, done: make(chan struct{})}
}

// Close ends every feed.
func (u *UIEvents) Close() { u.once.Do(func() { close(u.done) }) }

// uiHello is the first event of a feed.
type uiHello struct {
	Principal    string   `json:"principal"`
	Role         string   `json:"role"`
	Organization string   `json:"organization"`
	Index        uint64   `json:"index"`
	Methods      []string `json:"methods"`
	Metrics      bool     `json:"metrics"`
}

// ServeHTTP serves one feed until the browser leaves, the token stops
// being usable, or Close.
func (u *UIEvents) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const method = "GET /ui/events"
	header := r.Header.Get("Authorization")
	p, err := u.authenticate(r.Context(), header)
	if err != nil {
		u.refuse(w, r, method, p, err)
		return
	}
	if u.streams.Add(1) > uiMaxStreams {
		u.streams.Add(-1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("this node serves %d dashboard feeds already: retry later", uiMaxStreams), http.StatusTooManyRequests)
		return
	}
	defer u.streams.Add(-1)
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{}) // the server's read timeout would end a long-lived request
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if err := u.stream(r.Context(), rc, w, header, p); err != nil {
		u.s.log.Debug("dashboard feed ended", "principal", p.ID, "error", err)
	}
}

// authenticate checks the token like GET /metrics does: a token this node
// accepts is checked again after a read index on a follower, so a token
// revoked anywhere is refused here too.
func (u *UIEvents) authenticate(ctx context.Context, header string) (Principal, error) {
	p, err := u.s.auth.fromToken(header)
	if err == nil && !u.s.raft.IsLeader() {
		rctx, cancel := context.WithTimeout(ctx, metricsAuthWait)
		_, rerr := u.s.raft.LinearizableRead(rctx)
		cancel()
		if rerr != nil {
			return p, fmt.Errorf("check the token with the leader: %w", rerr)
		}
		p, err = u.s.auth.fromToken(header)
	}
	if err == nil && p.Role == RoleNone {
		err = fmt.Errorf("%w: the token has no role", ErrUnauthenticated)
	}
	return p, err
}

// refuse answers a feed request that is not authenticated: 401 with a
// challenge (audited like a refused API call), or 503 while the node
// cannot check the token.
func (u *UIEvents) refuse(w http.ResponseWriter, r *http.Request, method string, p Principal, err error) {
	st := toStatus(u.s.log, method, err)
	if status.Code(st) != codes.Unauthenticated {
		u.s.metrics.unavailable(unavailCatchingUp)
		w.Header().Set("Retry-After", readinessRetryAfter)
		http.Error(w, status.Convert(st).Message(), http.StatusServiceUnavailable)
		return
	}
	ctx := r.Context()
	if ap, perr := netip.ParseAddrPort(r.RemoteAddr); perr == nil {
		ctx = peer.NewContext(ctx, &peer.Peer{Addr: net.TCPAddrFromAddrPort(ap)})
	}
	u.s.auditAuthFailure(ctx, method, p, st)
	w.Header().Set("WWW-Authenticate", `Bearer realm="trustfed"`)
	http.Error(w, status.Convert(st).Message(), http.StatusUnauthorized)
}

// stream writes the feed's events until ctx ends, the token stops being
// usable or Close.
func (u *UIEvents) stream(ctx context.Context, rc *http.ResponseController, w http.ResponseWriter, header string, p Principal) error {
	send := func(event string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode %s: %w", event, err)
		}
		_ = rc.SetWriteDeadline(time.Now().Add(uiWriteWait))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return fmt.Errorf("write %s: %w", event, err)
		}
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("flush %s: %w", event, err)
		}
		return nil
	}
	view := u.s.store.Read()
	last, watch := view.Index(), view.IndexWatch()
	withMetrics := p.Role == RoleAdmin || p.Role == RoleMonitor
	hello := uiHello{Principal: p.ID, Role: p.Role.String(), Organization: p.Organization, Index: last, Methods: permittedMethods(p.Role), Metrics: withMetrics}
	if err := send("hello", hello); err != nil {
		return err
	}
	if withMetrics {
		if err := send("metrics", u.sample()); err != nil {
			return err
		}
	}
	tick := time.NewTicker(uiTick)
	defer tick.Stop()
	var lastSent, lastPing time.Time
	for {
		ticked := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-u.done:
			return nil
		case <-watch:
			watch = nil // re-armed below once the notice is sent
		case <-tick.C:
			ticked = true
		}
		if _, err := u.s.auth.fromToken(header); err != nil {
			_ = send("unauthenticated", map[string]string{"message": status.Convert(toStatus(u.s.log, "GET /ui/events", err)).Message()})
			return err
		}
		view := u.s.store.Read()
		now := time.Now()
		if idx := view.Index(); idx != last && now.Sub(lastSent) >= uiMinGap {
			if err := send("change", map[string]uint64{"index": idx}); err != nil {
				return err
			}
			last, lastSent, lastPing = idx, now, now
		}
		if watch == nil && view.Index() == last {
			watch = view.IndexWatch()
		}
		if !ticked {
			continue
		}
		if withMetrics {
			if err := send("metrics", u.sample()); err != nil {
				return err
			}
			lastPing = now
		}
		if now.Sub(lastPing) >= uiPing {
			_ = rc.SetWriteDeadline(now.Add(uiWriteWait))
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return fmt.Errorf("write ping: %w", err)
			}
			if err := rc.Flush(); err != nil {
				return fmt.Errorf("flush ping: %w", err)
			}
			lastPing = now
		}
	}
}

// permittedMethods lists the API methods role may call by the
// authorisation table (public ones included), sorted.
func permittedMethods(role Role) []string {
	var out []string
	for m, r := range accessPolicy {
		if slices.Contains(r.roles, role) || slices.Contains(r.roles, RoleNone) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// uiSample is one metrics event: cumulative counters since the node
// started (the page charts their differences).
type uiSample struct {
	TimeMillis int64 `json:"time"`
	// Decisions counts checks by "decision" or "decision/reason".
	Decisions map[string]float64 `json:"decisions"`
	// Levels counts checks by the interaction's effective level ("0".."4").
	Levels map[string]float64 `json:"levels"`
	// Latency is CheckInteraction's handling time histogram: cumulative
	// counts by upper bound in seconds.
	Latency uiHistogram `json:"latency"`
}

type uiHistogram struct {
	Bounds []float64 `json:"bounds"`
	Counts []uint64  `json:"counts"`
	Count  uint64    `json:"count"`
	Sum    float64   `json:"sum"`
}

// sample reads the metrics the Interactions page charts.
func (u *UIEvents) sample() uiSample {
	out := uiSample{TimeMillis: time.Now().UnixMilli(), Decisions: map[string]float64{}, Levels: map[string]float64{}}
	fams, err := u.gather.Gather()
	if err != nil {
		u.s.log.Warn("dashboard feed: gather metrics", "error", err)
	}
	for _, f := range fams {
		switch f.GetName() {
		case "trustfed_decisions_total":
			for _, m := range f.GetMetric() {
				key := label(m, "decision")
				if r := label(m, "reason"); r != "" {
					key += "/" + r
				}
				out.Decisions[key] += m.GetCounter().GetValue()
			}
		case "trustfed_decisions_by_level_total":
			for _, m := range f.GetMetric() {
				out.Levels[label(m, "level")] += m.GetCounter().GetValue()
			}
		case "grpc_server_handling_seconds":
			for _, m := range f.GetMetric() {
				if label(m, "grpc_method") != "CheckInteraction" {
					continue
				}
				h := m.GetHistogram()
				out.Latency = uiHistogram{Count: h.GetSampleCount(), Sum: h.GetSampleSum()}
				for _, b := range h.GetBucket() {
					out.Latency.Bounds = append(out.Latency.Bounds, b.GetUpperBound())
					out.Latency.Counts = append(out.Latency.Counts, b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
