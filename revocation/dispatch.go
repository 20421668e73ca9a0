package revocation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Channel names how a partner acknowledged a notification.
type Channel string

// Channels of a notification.
const (
	// ChannelWebhook: a 2xx answer to a signed HTTPS webhook.
	ChannelWebhook Channel = "webhook"
	// ChannelStream: an AckEvent for an event sent on a WatchEvents stream.
	ChannelStream Channel = "stream"
)

// Target is one partner to notify.
type Target struct {
	// Partner is the partner organisation's id, unique within a cascade.
	Partner string
	// Endpoints are the partner's registered webhook URLs (https), tried in
	// order.
	Endpoints []string
	// CAPEM holds the PEM CA certificates the partner registered for its
	// endpoints (signed webhook settings), trusted for them in addition to
	// the sender's own roots. Empty: the sender's roots only.
	CAPEM string
}

// Notification is what every partner of a cascade receives.
type Notification struct {
	// EventID identifies the event; receivers de-duplicate by it. 1..256
	// visible ASCII characters.
	EventID string
	// Body is opaque to the dispatcher (for instance the protojson of the
	// event).
	Body []byte
	// ContentType of Body; "" means application/octet-stream.
	ContentType string
}

// Sender delivers a notification to one target. A nil error means the
// partner acknowledged it (a 2xx to a webhook, an AckEvent on a stream), and
// the channel says which. Send must return promptly once ctx is done, and be
// safe for concurrent use.
type Sender interface {
	Send(ctx context.Context, t Target, n Notification) (Channel, error)
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, t Target, n Notification) (Channel, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, t Target, n Notification) (Channel, error) {
	return f(ctx, t, n)
}

// Progress is where a partner stood in an earlier run of a cascade (the
// cascade record in the replicated state), so that a new leader resumes it.
type Progress struct {
	// Attempts already made; the next attempt is numbered Attempts+1.
	Attempts int
	// Acked partners are not notified again.
	Acked bool
	// Escalated partners are not escalated again.
	Escalated bool
}

// Cascade is one revocation's notification round.
type Cascade struct {
	// ID names the cascade in logs.
	ID string
	// Start is when the revocation was committed. Escalation is timed from
	// it, so a resumed cascade keeps its original schedule; zero means the
	// time Run starts.
	Start time.Time
	// Notification is sent to every target.
	Notification Notification
	// Targets are the partners, each at most once.
	Targets []Target
	// Progress, by partner, of earlier runs; nil for a new cascade.
	Progress map[string]Progress
}

// Recorder receives the progress of a cascade; the registry batches it into
// Raft commands (see Batcher). Its methods are called concurrently from many
// workers and must not block for long: a slow Recorder slows every send.
type Recorder interface {
	// Attempt reports attempt number attempt (1-based, counting earlier
	// runs) to notify partner, started at at; err is nil when it was
	// acknowledged.
	Attempt(partner string, at time.Time, attempt int, err error)
	// Acked reports that partner acknowledged at at on channel ch.
	Acked(partner string, ch Channel, at time.Time)
	// Escalate reports that partner was still unacknowledged at the
	// escalation point (at). It is called at most once per partner per run,
	// and never for a partner whose Progress says Escalated.
	Escalate(partner string, at time.Time)
}

// Defaults of Config.
const (
	DefaultWorkers     = 256
	DefaultBaseBackoff = 200 * time.Millisecond
	DefaultMaxBackoff  = 10 * time.Second
	DefaultDeadline    = 300 * time.Second
	DefaultEscalateAt  = 0.8
)

// ErrInvalidCascade is returned by Run for a cascade it cannot dispatch.
var ErrInvalidCascade = errors.New("invalid cascade")

// Config configures a Dispatcher. Zero fields take the defaults.
type Config struct {
	// Workers bounds the sends in flight (default 256). A worker waiting on
	// the network is a parked goroutine, not a thread: size it for the
	// latency of the slowest partners, roughly partners × mean latency ×
	// (1 + failure rate) / target time.
	Workers int
	// BaseBackoff is the ceiling of the first retry delay (default 200 ms);
	// it doubles per failure up to MaxBackoff (default 10 s). Each delay is
	// drawn uniformly below its ceiling (full jitter).
	BaseBackoff, MaxBackoff time.Duration
	// Deadline is the time partners have to acknowledge (default 300 s).
	// It does not stop the retries: past it, every retry waits up to
	// MaxBackoff, until acknowledged or Run's context ends.
	Deadline time.Duration
	// EscalateAt is the fraction of Deadline, after Cascade.Start, at which
	// partners still unacknowledged are escalated (default 0.8: 240 s of
	// 300 s). In (0, 1].
	EscalateAt float64
	// Now stamps the records; nil means time.Now. Waits always use the
	// runtime's timers.
	Now func() time.Time
	// Rand draws the jitter; nil means a randomly seeded generator.
	Rand *rand.Rand
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Dispatcher notifies the partners of cascades through a Sender. One
// Dispatcher may run several cascades at once; each Run has its own
// workers.
type Dispatcher struct {
	cfg    Config
	sender Sender
	randMu sync.Mutex // guards cfg.Rand
}

// NewDispatcher returns a Dispatcher sending through sender.
func NewDispatcher(cfg Config, sender Sender) (*Dispatcher, error) {
	if sender == nil {
		return nil, errors.New("new dispatcher: nil sender")
	}
	if cfg.Workers < 0 || cfg.BaseBackoff < 0 || cfg.MaxBackoff < 0 || cfg.Deadline < 0 {
		return nil, errors.New("new dispatcher: negative workers, backoff or deadline")
	}
	if cfg.EscalateAt < 0 || cfg.EscalateAt > 1 {
		return nil, fmt.Errorf("new dispatcher: escalation fraction %v outside (0, 1]", cfg.EscalateAt)
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.BaseBackoff == 0 {
		cfg.BaseBackoff = DefaultBaseBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.BaseBackoff)
	if cfg.Deadline == 0 {
		cfg.Deadline = DefaultDeadline
	}
	if cfg.EscalateAt == 0 {
		cfg.EscalateAt = DefaultEscalateAt
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dispatcher{cfg: cfg, sender: sender}, nil
}

// backoff returns the delay before the retry that follows the failures-th
// consecutive failure of this run: full jitter below min(MaxBackoff,
// BaseBackoff·2^(failures-1)), or below MaxBackoff once the deadline passed.
func (d *Dispatcher) backoff(failures int, pastDeadline bool) time.Duration {
	ceiling := d.cfg.MaxBackoff
	if !pastDeadline {
		ceiling = d.cfg.BaseBackoff
		for i := 1; i < failures && ceiling < d.cfg.MaxBackoff; i++ {
			ceiling *= 2
		}
		ceiling = min(ceiling, d.cfg.MaxBackoff)
	}
	d.randMu.Lock()
	defer d.randMu.Unlock()
	return time.Duration(d.cfg.Rand.Int64N(int64(ceiling) + 1))
}

// validate checks c and returns its start time.
func (c *Cascade) validate(now time.Time) (time.Time, error) {
	if !validEventID(c.Notification.EventID) {
		return time.Time{}, fmt.Errorf("%w %s: event id %q is not 1..%d visible ASCII characters",
			ErrInvalidCascade, c.ID, c.Notification.EventID, maxEventIDLen)
	}
	seen := make(map[string]bool, len(c.Targets))
	for _, t := range c.Targets {
		switch {
		case t.Partner == "":
			return time.Time{}, fmt.Errorf("%w %s: target without partner id", ErrInvalidCascade, c.ID)
		case seen[t.Partner]:
			return time.Time{}, fmt.Errorf("%w %s: partner %s listed twice", ErrInvalidCascade, c.ID, t.Partner)
		}
		seen[t.Partner] = true
	}
	if c.Start.IsZero() {
		return now, nil
	}
	return c.Start, nil
}

// job asks a worker for one attempt to notify target idx.
type job struct {
	idx     int
	attempt int
}

// outcome is a worker's report of one attempt.
type outcome struct {
	idx int
	err error
}

// peer is the scheduler's state of one target.
type peer struct {
	attempts  int // including earlier runs
	failures  int // consecutive failures in this run
	acked     bool
	escalated bool
}

// Run notifies every target of c not yet acknowledged, in parallel on up to
// Config.Workers workers, retrying each failed partner after its own
// backoff, and escalating through rec the partners still unacknowledged at
// the escalation point. It returns nil once every target acknowledged, or an
// error wrapping the context's once ctx is done (leadership lost): the
// cascade record then tells the next leader where to resume. Run returns
// only after all its workers have stopped.
func (d *Dispatcher) Run(ctx context.Context, c Cascade, rec Recorder) error {
	start, err := c.validate(d.cfg.Now())
	if err != nil {
		return err
	}
	log := d.cfg.Logger.With("cascade", c.ID, "event", c.Notification.EventID)
	peers := make([]peer, len(c.Targets))
	ready := make([]int, 0, len(c.Targets))
	for i, t := range c.Targets {
		p := c.Progress[t.Partner]
		peers[i] = peer{attempts: p.Attempts, acked: p.Acked, escalated: p.Escalated}
		if !p.Acked {
			ready = append(ready, i)
		}
	}
	pending := len(ready)
	if pending == 0 {
		return nil
	}
	log.Info("revocation cascade dispatching", "partners", len(c.Targets), "pending", pending)

	ctx, cancel := context.WithCancel(ctx)
	workers := min(d.cfg.Workers, pending)
	jobs := make(chan job, workers)
	outcomes := make(chan outcome, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() { d.work(ctx, &c, jobs, outcomes, rec) })
	}
	defer func() {
		cancel()
		wg.Wait()
	}()

	s := scheduler{ready: ready}
	defer s.stop()
	deadline := start.Add(d.cfg.Deadline)
	escalateAt := start.Add(time.Duration(float64(d.cfg.Deadline) * d.cfg.EscalateAt))
	escalation := time.NewTimer(escalateAt.Sub(d.cfg.Now()))
	defer escalation.Stop()
	escalateC := escalation.C

	for pending > 0 {
		var jobC chan<- job
		var next job
		if i, ok := s.peek(); ok {
			jobC, next = jobs, job{idx: i, attempt: peers[i].attempts + 1}
		}
		select {
		case jobC <- next:
			s.pop()
			peers[next.idx].attempts++
		case o := <-outcomes:
			p := &peers[o.idx]
			if o.err == nil {
				p.acked = true
				pending--
				continue
			}
			p.failures++
			delay := d.backoff(p.failures, !d.cfg.Now().Before(deadline))
			log.Debug("revocation notification failed", "partner", c.Targets[o.idx].Partner,
				"attempt", p.attempts, "retry_in", delay, "err", o.err)
			s.retry(o.idx, time.Now().Add(delay))
		case <-s.timerC():
			s.due(time.Now())
		case <-escalateC:
			escalateC = nil
			d.escalate(&c, peers, rec, log)
		case <-ctx.Done():
			log.Info("revocation cascade interrupted", "pending", pending, "cause", context.Cause(ctx))
			return fmt.Errorf("revocation cascade %s: %d partners unacknowledged: %w", c.ID, pending, context.Cause(ctx))
		}
	}
	log.Info("revocation cascade acknowledged by every partner", "partners", len(c.Targets),
		"elapsed", d.cfg.Now().Sub(start))
	return nil
}

// escalate reports every unacknowledged, not yet escalated partner.
func (d *Dispatcher) escalate(c *Cascade, peers []peer, rec Recorder, log *slog.Logger) {
	at := d.cfg.Now()
	n := 0
	for i := range peers {
		if p := &peers[i]; !p.acked && !p.escalated {
			p.escalated = true
			rec.Escalate(c.Targets[i].Partner, at)
			n++
		}
	}
	if n > 0 {
		log.Warn("revocation cascade escalated: partners unacknowledged at the escalation point", "partners", n)
	}
}

// work runs attempts until ctx is done.
func (d *Dispatcher) work(ctx context.Context, c *Cascade, jobs <-chan job, outcomes chan<- outcome, rec Recorder) {
	for {
		var j job
		select {
		case <-ctx.Done():
			return
		case j = <-jobs:
		}
		t := c.Targets[j.idx]
		at := d.cfg.Now()
		ch, err := d.sender.Send(ctx, t, c.Notification)
		if err != nil && ctx.Err() != nil {
			return // interrupted, not a failure of the partner
		}
		rec.Attempt(t.Partner, at, j.attempt, err)
		if err == nil {
			rec.Acked(t.Partner, ch, d.cfg.Now())
		}
		select {
		case outcomes <- outcome{idx: j.idx, err: err}:
		case <-ctx.Done():
			return
		}
	}
}
