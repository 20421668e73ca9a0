package revocation

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Runner is the leader's side of the cascade: it runs the Dispatcher on
// every cascade of the replicated state that some partner has not
// acknowledged, takes members' stream acknowledgements (AckEvent) and
// commits the progress through Raft in batches. It reads the state and
// proposes commands; it discovers nothing: the partners are the cascade's
// deliveries, fixed by the state machine when the event committed.
type Runner struct {
	cfg RunnerConfig
	hub *ackHub
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Store *state.Store
	// Propose replicates a command through Raft (on the leader).
	Propose func(ctx context.Context, cmd proto.Message) error
	// Dispatch configures the dispatcher (workers, backoff, deadline,
	// escalation point).
	Dispatch Config
	// WebhookTLS is the client TLS for webhooks (nil: system roots).
	WebhookTLS *tls.Config
	// WebhookSigner is the key webhooks are signed with at a time: the
	// sending node's endorsed key (registry.Server.WebhookSigner). nil: the
	// registry key in the state (tests).
	WebhookSigner WebhookSigner
	// WebhookTimeout bounds each webhook request (default 5 s).
	WebhookTimeout time.Duration
	// AckWait is how long one attempt waits for a stream acknowledgement
	// from a partner without webhook endpoints (default 5 s).
	AckWait time.Duration
	// BatchSize and BatchInterval group progress records into Raft
	// commands (default 512 and 20 ms).
	BatchSize     int
	BatchInterval time.Duration
	// SweepEvery is how often the leader looks for sessions and agreements
	// that time has ended (default 1 s).
	SweepEvery time.Duration
	// SweepFullEvery is how often that look is a scan of every agreement
	// (state.Reader.SweepDue) rather than of what can have become due since
	// the last look that found nothing (state.Reader.SweepDueSince); the
	// full scan is a safety net for a command applied more than
	// state.SweepSkew after it was stamped (default 5 min).
	SweepFullEvery time.Duration
	Logger         *slog.Logger
}

// rerunAfter is how long a cascade whose dispatch finished is left alone
// while its last acknowledgements are being committed.
const rerunAfter = 10 * time.Second

// NewRunner checks cfg and returns a Runner.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.Store == nil || cfg.Propose == nil {
		return nil, errors.New("revocation runner: Store and Propose are required")
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 5 * time.Second
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 512
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = 20 * time.Millisecond
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = time.Second
	}
	if cfg.SweepFullEvery <= 0 {
		cfg.SweepFullEvery = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Dispatch.Logger == nil {
		cfg.Dispatch.Logger = cfg.Logger
	}
	return &Runner{cfg: cfg, hub: newAckHub()}, nil
}

// Ack takes a member's acknowledgement of an event (registry.AckSink).
func (r *Runner) Ack(eventID, org string) { r.hub.ack(eventID, org) }

// Run dispatches cascades until ctx ends (leadership lost). It is a leader
// task: a new leader's Run resumes every unfinished cascade from its record.
func (r *Runner) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batcher, err := NewBatcher(r.cfg.BatchSize, r.cfg.BatchInterval, r.flush)
	if err != nil {
		return err
	}
	// One sender per leadership term: its connections are reused by every
	// cascade of the term. Closed once every dispatch has returned.
	var sender *ackOrWebhook
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		if sender != nil {
			sender.Close()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := batcher.Run(ctx); err != nil {
			r.cfg.Logger.Error("cascade progress batcher stopped", "error", err)
			cancel()
		}
	}()
	running := map[string]bool{}
	finished := map[string]time.Time{}
	done := make(chan string)
	for {
		cascades, changed := r.cfg.Store.Read().IncompleteCascadesWatch()
		now := time.Now()
		for id, at := range finished {
			if now.Sub(at) >= rerunAfter {
				delete(finished, id)
			}
		}
		wait := rerunAfter
		if sender == nil && len(cascades) > 0 {
			if s, err := r.sender(); err != nil {
				r.cfg.Logger.Warn("cascades wait for the registry's signing key", "error", err)
				cascades, wait = nil, time.Second
			} else {
				sender = s
			}
		}
		for _, c := range cascades {
			if running[c.Id] || now.Sub(finished[c.Id]) < rerunAfter {
				continue
			}
			running[c.Id] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.dispatch(ctx, c, sender, batcher); err != nil && ctx.Err() == nil {
					r.cfg.Logger.Error("cascade dispatch failed", "cascade", c.Id, "error", err)
				}
				select {
				case done <- c.Id:
				case <-ctx.Done():
				}
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case id := <-done:
			delete(running, id)
			finished[id] = time.Now()
		case <-changed:
		case <-time.After(wait):
		}
	}
}

// RunSweeper proposes a Sweep whenever the state holds a session or an
// agreement that time has ended, until ctx ends. A leader task. Its first
// look of the term, and one every SweepFullEvery, scans every agreement;
// the others read only what can have become due since the last look that
// found nothing (state.Reader.SweepDueSince), so a look costs what is due,
// not what the state holds. The Sweep names what the look found
// (state.Reader.NextSweep), so applying it judges those again on every
// node instead of scanning the state.
func (r *Runner) RunSweeper(ctx context.Context) error {
	t := time.NewTicker(r.cfg.SweepEvery)
	defer t.Stop()
	var s sweepLook
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		sweep := s.next(r.cfg.Store.Read(), time.Now(), r.cfg.SweepFullEvery)
		if sweep == nil {
			continue
		}
		if err := r.cfg.Propose(ctx, sweep); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("sweep failed", "error", err)
		}
	}
}

// sweepLook is the sweeper's memory between looks: where it last found
// nothing due, and when it last scanned everything.
type sweepLook struct {
	mark     state.SweepMark
	lastFull time.Time
	fulls    int // full scans made (tests)
}

// next is the Sweep to propose at now, naming what is due in rd, or nil.
func (s *sweepLook) next(rd *state.Reader, now time.Time, fullEvery time.Duration) *commandv1.Sweep {
	mark := s.mark
	if mark.Time.IsZero() || now.Sub(s.lastFull) >= fullEvery || now.Before(s.lastFull) {
		mark, s.lastFull = state.SweepMark{}, now // a zero mark: the full scan
		s.fulls++
	}
	sweep := rd.NextSweep(mark, now)
	if sweep == nil {
		s.mark = state.SweepMark{Time: now, Index: rd.Index()}
	}
	return sweep
}

func (r *Runner) flush(ctx context.Context, updates []*commandv1.DeliveryUpdate) error {
	if err := r.cfg.Propose(ctx, &commandv1.RecordDeliveries{Updates: updates}); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// Dropped: the partners concerned are notified again later and
		// receivers de-duplicate by event id.
		r.cfg.Logger.Warn("cascade progress not recorded", "updates", len(updates), "error", err)
	}
	return nil
}

// dispatch runs the Dispatcher on one cascade.
func (r *Runner) dispatch(ctx context.Context, c *trustfedv1.Cascade, sender Sender, batcher *Batcher[*commandv1.DeliveryUpdate]) error {
	d, err := NewDispatcher(r.cfg.Dispatch, sender)
	if err != nil {
		return err
	}
	body, err := protojson.Marshal(c.Event)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", c.Id, err)
	}
	rd := r.cfg.Store.Read()
	cas := Cascade{ID: c.Id, Start: c.StartTime.AsTime(), Notification: Notification{EventID: c.Id, Body: body, ContentType: "application/json"},
		Progress: map[string]Progress{}}
	for _, del := range c.Deliveries {
		cas.Progress[del.OrganizationId] = Progress{Attempts: int(del.Attempts), Acked: del.AckTime != nil, Escalated: del.EscalateTime != nil}
		t := Target{Partner: del.OrganizationId}
		if o, ok := rd.Organization(del.OrganizationId); ok {
			t.Endpoints, t.CAPEM = o.NotificationEndpoints, o.WebhookCaCertificatesPem
		}
		cas.Targets = append(cas.Targets, t)
	}
	rec := &recorder{cascade: c.Id, dispatched: time.Now(), batcher: batcher, log: r.cfg.Logger}
	r.cfg.Logger.Info("cascade dispatch", "cascade", c.Id, "kind", c.Event.Kind, "organization", c.Event.OrganizationId, "partners", len(c.Deliveries), "acked", c.Acked)
	defer r.hub.forget(c.Id)
	return d.Run(ctx, cas, rec)
}

// sender delivers through a member's event stream (its AckEvent) or its
// webhooks, whichever acknowledges first.
func (r *Runner) sender() (*ackOrWebhook, error) {
	cfg := WebhookConfig{Signer: r.cfg.WebhookSigner, TLS: r.cfg.WebhookTLS, Timeout: r.cfg.WebhookTimeout}
	if cfg.Signer == nil {
		// A cluster without node keys signs with its registry key.
		key, ok := r.cfg.Store.Read().NewestSigningKey()
		if !ok {
			return nil, errors.New("the registry has no signing key yet")
		}
		cfg.Key, cfg.KeyID = ed25519.NewKeyFromSeed(key.PrivateSeed), key.KeyId
	}
	wh, err := NewWebhookSender(cfg)
	if err != nil {
		return nil, err
	}
	return &ackOrWebhook{hub: r.hub, webhook: wh, wait: r.cfg.AckWait}, nil
}

// ackOrWebhook is the Sender of the runner.
type ackOrWebhook struct {
	hub     *ackHub
	webhook *WebhookSender
	wait    time.Duration
}

func (s *ackOrWebhook) Close() { s.webhook.Close() }

func (s *ackOrWebhook) Send(ctx context.Context, t Target, n Notification) (Channel, error) {
	acked := s.hub.wait(n.EventID, t.Partner)
	select {
	case <-acked:
		return ChannelStream, nil
	default:
	}
	if len(t.Endpoints) == 0 {
		timer := time.NewTimer(s.wait)
		defer timer.Stop()
		select {
		case <-acked:
			return ChannelStream, nil
		case <-timer.C:
			return "", fmt.Errorf("%w: no stream acknowledgement within %s and no webhook endpoint", ErrNotAcknowledged, s.wait)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		ch  Channel
		err error
	}
	res := make(chan result, 1)
	go func() {
		ch, err := s.webhook.Send(wctx, t, n)
		res <- result{ch, err}
	}()
	select {
	case <-acked:
		cancel()
		<-res
		return ChannelStream, nil
	case out := <-res:
		return out.ch, out.err
	}
}

// recorder turns the dispatcher's progress into delivery updates for the
// batcher. A successful attempt is not recorded on its own: the ack that
// follows it carries the attempt count and first attempt time, so a partner
// that answers at once costs one update, not two.
type recorder struct {
	cascade    string
	dispatched time.Time
	batcher    *Batcher[*commandv1.DeliveryUpdate]
	log        *slog.Logger

	mu    sync.Mutex
	tried map[string]attemptInfo
}

type attemptInfo struct {
	first, last time.Time
	n           int
}

func (r *recorder) add(d *trustfedv1.Delivery) {
	d.DispatchTime = timestamppb.New(r.dispatched)
	r.batcher.Add(&commandv1.DeliveryUpdate{CascadeId: r.cascade, Delivery: d})
}

func (r *recorder) Attempt(partner string, at time.Time, attempt int, err error) {
	r.mu.Lock()
	if r.tried == nil {
		r.tried = map[string]attemptInfo{}
	}
	info, ok := r.tried[partner]
	if !ok {
		info.first = at
	}
	info.last, info.n = at, attempt
	r.tried[partner] = info
	r.mu.Unlock()
	if err == nil {
		return // recorded with the ack
	}
	r.add(&trustfedv1.Delivery{OrganizationId: partner, FirstAttemptTime: timestamppb.New(info.first), LastAttemptTime: timestamppb.New(at),
		Attempts: uint32(attempt), LastError: err.Error()})
}

func (r *recorder) Acked(partner string, ch Channel, at time.Time) {
	c := trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK
	if ch == ChannelStream {
		c = trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_STREAM
	}
	d := &trustfedv1.Delivery{OrganizationId: partner, AckTime: timestamppb.New(at), Channel: c}
	r.mu.Lock()
	if info, ok := r.tried[partner]; ok {
		d.FirstAttemptTime, d.LastAttemptTime, d.Attempts = timestamppb.New(info.first), timestamppb.New(info.last), uint32(info.n)
	}
	r.mu.Unlock()
	r.add(d)
}

// Escalate is the escalation event: the partner is recorded as escalated
// in the cascade and an error is logged for the operators' alerting.
func (r *recorder) Escalate(partner string, at time.Time) {
	r.log.Error("cascade escalation: partner still unacknowledged at the escalation point", "cascade", r.cascade, "partner", partner)
	r.add(&trustfedv1.Delivery{OrganizationId: partner, EscalateTime: timestamppb.New(at)})
}

// ackHub holds the stream acknowledgements the leader received, for the
// sends waiting on them (or to come), by event then partner.
type ackHub struct {
	mu     sync.Mutex
	events map[string]map[string]chan struct{} // closed when the partner acked
}

func newAckHub() *ackHub { return &ackHub{events: map[string]map[string]chan struct{}{}} }

// ch returns the channel of (event, partner); h.mu is held.
func (h *ackHub) ch(eventID, partner string) chan struct{} {
	partners, ok := h.events[eventID]
	if !ok {
		partners = map[string]chan struct{}{}
		h.events[eventID] = partners
	}
	c, ok := partners[partner]
	if !ok {
		c = make(chan struct{})
		partners[partner] = c
	}
	return c
}

func (h *ackHub) ack(eventID, partner string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.ch(eventID, partner)
	select {
	case <-c: // already acknowledged
	default:
		close(c)
	}
}

// wait returns a channel closed once the partner acknowledged the event.
func (h *ackHub) wait(eventID, partner string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ch(eventID, partner)
}

// forget drops what the hub holds about an event.
func (h *ackHub) forget(eventID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.events, eventID)
}
