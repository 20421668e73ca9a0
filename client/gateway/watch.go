package gateway

import (
	"context"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Reconnection backoff of the invalidation stream.
const (
	watchMinBackoff = 50 * time.Millisecond
	watchMaxBackoff = 5 * time.Second
)

// watch keeps the WatchEvents stream of the gateway's organisation open
// until ctx ends. While it is down the cache serves nothing; each
// reconnection resumes after the last event seen.
func (g *Gateway) watch(ctx context.Context, acks chan<- *trustfedv1.Event) {
	var last uint64
	backoff := watchMinBackoff
	for {
		connected, err := g.watchOnce(ctx, &last, acks)
		g.cache.down()
		if ctx.Err() != nil {
			return
		}
		if connected {
			backoff = watchMinBackoff
		}
		g.log.Warn("invalidation stream lost: cache off until it resynchronises", "error", err, "retry_in", backoff)
		g.regs.rotate()
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, watchMaxBackoff)
	}
}

// watchOnce opens one stream from after *last and applies its events until
// it fails. connected reports whether it got as far as resynchronising.
func (g *Gateway) watchOnce(ctx context.Context, last *uint64, acks chan<- *trustfedv1.Event) (connected bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g.streamMu.Lock()
	g.streamCancel = cancel
	g.streamMu.Unlock()
	c := g.regs.current()
	stream, err := c.Cascades().WatchEvents(sctx, &trustfedv1.WatchEventsRequest{OrganizationId: g.cfg.Organization, AfterIndex: *last})
	if err != nil {
		return false, fmt.Errorf("watch events: %w", err)
	}
	if _, err := stream.Header(); err != nil {
		return false, fmt.Errorf("watch events: %w", err)
	}
	// The stream now delivers every event after *last. What the registry
	// decided before this index may have been invalidated while the stream
	// was down by events still in flight: such decisions are refused.
	floor, err := g.registryIndex(sctx, c)
	if err != nil {
		return false, err
	}
	g.cache.up(floor)
	g.readyOnce.Do(func() { close(g.ready) })
	g.log.Debug("invalidation stream synchronised", "after_index", *last, "floor", floor)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return true, fmt.Errorf("watch events: %w", err)
		}
		ev := resp.GetEvent()
		g.apply(ev)
		if ev.GetIndex() > *last {
			*last = ev.GetIndex()
		}
		select {
		case acks <- ev:
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

// registryIndex is the registry's current index (a linearizable read of
// the gateway's own organisation).
func (g *Gateway) registryIndex(ctx context.Context, c *client.Client) (uint64, error) {
	resp, err := c.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: g.cfg.Organization, Consistency: trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		return 0, fmt.Errorf("read the registry index: %w", err)
	}
	return resp.GetMeta().GetIndex(), nil
}

// apply invalidates what an event makes stale: cached decisions naming its
// organisation (or session), and sessions it ends.
func (g *Gateway) apply(ev *trustfedv1.Event) {
	g.cache.invalidate(ev)
	g.stats.events.Add(1)
	if g.cfg.OnEvent != nil {
		g.cfg.OnEvent(ev)
	}
	g.sessions.event(ev)
	g.log.Info("registry event: decisions invalidated", "event_id", ev.GetId(), "kind", ev.GetKind().String(), "about", ev.GetOrganizationId(), "index", ev.GetIndex())
}

// ackLoop acknowledges events (the registry's cascade waits for every
// partner's ack), retrying unknown outcomes with the same request.
func (g *Gateway) ackLoop(ctx context.Context, acks <-chan *trustfedv1.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-acks:
			req := &trustfedv1.AckEventRequest{EventId: ev.GetId(), OrganizationId: g.cfg.Organization}
			err := g.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
				return client.RetryUnknown(ctx, func(ctx context.Context) error {
					_, err := c.Cascades().AckEvent(ctx, req)
					return err
				})
			})
			if err != nil && ctx.Err() == nil {
				g.log.Warn("acknowledging an event failed", "event_id", ev.GetId(), "error", err)
			}
		}
	}
}

// resync drops the stream and reconnects it: the registry refused this
// node's credentials on another call (its organisation suspended or
// revoked, the node removed), and an admitted stream is not cut by the
// registry. The new stream is refused too, so the gateway stops serving
// decisions and accepting envelopes until its credentials work again.
func (g *Gateway) resync() {
	g.streamMu.Lock()
	defer g.streamMu.Unlock()
	if g.streamCancel != nil {
		g.streamCancel()
	}
}
