package server

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/faultinject"
	"github.com/trustfed/trustfed/registry/decision"
)

// The leader stamps every audit batch with its wall clock, and a replica
// vouches for a batch only if that time is within [-MaxDecisionAge,
// +MaxDecisionLead] of its own clock (registry.Cosigner.checkBatchTime).
// A leader whose clock is off from a majority's therefore gets no decision
// certified anywhere: every check of the cluster is refused. The clock
// check is the leader's way out: each second it asks every voter for its
// clock (PeerService.Progress) and, when a majority of the voters would
// refuse its stamps twice in a row, it hands leadership to another voter
// and logs why. A follower whose own clock is off needs nothing: it
// answers no check (nobody vouches for its decisions) while the others do.

const (
	// clockCheckEvery is how often the leader compares clocks.
	clockCheckEvery = time.Second
	// clockCheckTimeout bounds one Progress call; a slower answer says
	// nothing about the clock (its midpoint is too uncertain).
	clockCheckTimeout = 500 * time.Millisecond
	// clockRounds is how many rounds in a row must find the leader's clock
	// off before it hands over (one slow round is not enough).
	clockRounds = 2
)

// clockMargin keeps the verdict on the safe side of the replicas' window:
// the leader hands over once its clock is within this of a bound, before
// the replicas start refusing.
var clockMargin = decision.MaxDecisionLead / 4

// clockSample is one voter's clock as the leader measured it: how far the
// leader's clock is ahead of the voter's (negative: behind), with the
// uncertainty of the measurement (half the round trip).
type clockSample struct {
	id    string
	ahead time.Duration
	err   time.Duration
}

// refuses reports whether a replica with this sample's clock would refuse
// the leader's stamps (taking the measurement's uncertainty in the
// leader's favour, and clockMargin against it).
func (c clockSample) refuses() bool {
	switch {
	case c.ahead-c.err > decision.MaxDecisionLead-clockMargin:
		return true
	case -c.ahead-c.err > decision.MaxDecisionAge-clockMargin:
		return true
	}
	return false
}

// clockOff decides, from the samples of the voters that answered (the
// leader not among them) in a cluster of voters voters, whether the
// leader's clock is off: so many voters refuse its stamps that the others
// with the leader, even counting every voter that did not answer, are no
// quorum (a check is certified only by a quorum vouching for its batch).
// A voter that did not answer counts for the leader: a partition is not a
// clock fault.
func clockOff(samples []clockSample, voters int) bool {
	refusing := 0
	for _, s := range samples {
		if s.refuses() {
			refusing++
		}
	}
	return voters-refusing < voters/2+1
}

// clockChecker is the leader task that compares clocks.
type clockChecker struct {
	node   *consensus.Node
	peers  consensus.ProgressClient
	selfID string
	logger *slog.Logger
	now    func() time.Time // faultinject.Now in the server
}

func newClockChecker(node *consensus.Node, peers consensus.ProgressClient, selfID string, logger *slog.Logger) *clockChecker {
	return &clockChecker{node: node, peers: peers, selfID: selfID, logger: logger, now: faultinject.Now}
}

// run is the leader task: it ends when leadership does.
func (c *clockChecker) run(ctx context.Context) error {
	t := time.NewTicker(clockCheckEvery)
	defer t.Stop()
	offRounds := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		samples, voters, err := c.round(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.logger.Debug("clock check skipped", "error", err)
			}
			continue
		}
		if !clockOff(samples, voters) {
			offRounds = 0
			continue
		}
		if offRounds++; offRounds < clockRounds {
			continue
		}
		offRounds = 0
		c.logger.Error("this leader's clock is off from a majority of the voters: they would refuse the times it stamps on audit batches, so no check could be certified; handing leadership over (fix this node's clock: NTP)",
			"samples", describeSamples(samples), "window_lead", decision.MaxDecisionLead, "window_age", decision.MaxDecisionAge)
		if err := c.node.TransferLeadership(ctx); err != nil && ctx.Err() == nil {
			c.logger.Error("hand leadership over for a clock off", "error", err)
		}
	}
}

// round asks every other voter for its clock, at once, and returns the
// answers within clockCheckTimeout and the number of voters.
func (c *clockChecker) round(ctx context.Context) ([]clockSample, int, error) {
	servers, err := c.node.Servers(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("clock check: %w", err)
	}
	var (
		mu      sync.Mutex
		samples []clockSample
		wg      sync.WaitGroup
		voters  int
	)
	for _, s := range servers {
		if !s.Voter {
			continue
		}
		voters++
		if s.ID == c.selfID || s.APIAddr == "" {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, clockCheckTimeout)
			defer cancel()
			sent, sentWall := time.Now(), c.now()
			p, err := c.peers.Progress(cctx, s.APIAddr)
			rtt := time.Since(sent)
			if err != nil || p.Time.IsZero() || p.NodeID != s.ID {
				return
			}
			mid := sentWall.Add(rtt / 2)
			mu.Lock()
			samples = append(samples, clockSample{id: s.ID, ahead: mid.Sub(p.Time), err: rtt / 2})
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.SortFunc(samples, func(a, b clockSample) int { return cmp.Compare(a.id, b.id) })
	return samples, voters, nil
}

// describeSamples is the samples for a log line: how far this leader's
// clock is ahead of each voter's.
func describeSamples(samples []clockSample) string {
	parts := make([]string, len(samples))
	for i, s := range samples {
		parts[i] = fmt.Sprintf("%s: %s ahead (±%s)", s.id, s.ahead.Round(time.Millisecond), s.err.Round(time.Millisecond))
	}
	return strings.Join(parts, ", ")
}
