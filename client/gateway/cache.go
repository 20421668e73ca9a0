package gateway

import (
	"sync"
	"sync/atomic"

	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// cacheKey is everything a decision depends on besides the sender (always
// this gateway's organisation): a decision is reused only for exactly the
// interaction it was asked for.
type cacheKey struct {
	to, action, session, authorization string
	types                              uint32 // bit t set: PiiType t is carried
	value                              int64
}

// decided is a verified decision, ready to be put in an envelope.
type decided struct {
	st         *trustfedv1.DecisionStatement
	wire       *gatewayv1.Decision // what envelopes carry
	validUntil int64               // st.valid_until, Unix nanoseconds
}

// decisionCache holds verified ALLOW decisions of this gateway's outbound
// interactions and the invalidation state both directions rely on.
//
// Invariants: an entry is served only while the invalidation stream is
// healthy and before its valid_until; an event about an organisation
// removes every entry naming it (all of them if it is this gateway's own)
// before the event is acknowledged; an entry older than the last event
// about either party is never stored.
type decisionCache struct {
	self    string
	healthy atomic.Bool

	mu      sync.RWMutex
	entries map[cacheKey]*decided
	// epochs[org] is the Raft index of the newest event about org this
	// gateway has seen: decisions computed before it are stale.
	epochs map[string]uint64
	// floor is the registry's index when the stream last (re)connected:
	// what happened before it and while the stream was down is unknown, so
	// decisions computed before it are stale.
	floor uint64
}

func newDecisionCache(self string) *decisionCache {
	return &decisionCache{self: self, entries: map[cacheKey]*decided{}, epochs: map[string]uint64{}}
}

// get returns the cached decision for k if it may still be used at now
// (Unix nanoseconds). It allocates nothing.
func (c *decisionCache) get(k cacheKey, now int64) *decided {
	if !c.healthy.Load() {
		return nil
	}
	c.mu.RLock()
	d := c.entries[k]
	c.mu.RUnlock()
	if d == nil || now >= d.validUntil {
		return nil
	}
	return d
}

// put caches d for k unless it is stale or the stream is down.
func (c *decisionCache) put(k cacheKey, d *decided) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.healthy.Load() || c.staleLocked(d.st) {
		return
	}
	c.entries[k] = d
}

// stale reports whether an event seen since st was computed, or a gap in
// the stream, makes it unusable.
func (c *decisionCache) stale(st *trustfedv1.DecisionStatement) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.staleLocked(st)
}

func (c *decisionCache) staleLocked(st *trustfedv1.DecisionStatement) bool {
	return st.Index < c.floor || st.Index < c.epochs[st.FromOrganizationId] || st.Index < c.epochs[st.ToOrganizationId]
}

// drop removes the entry of k (a partner said the decision was stale).
func (c *decisionCache) drop(k cacheKey) {
	c.mu.Lock()
	delete(c.entries, k)
	c.mu.Unlock()
}

// invalidate applies an event: every entry naming its organisation goes
// (every entry if it is about this gateway's own organisation), and so do
// the entries of its session.
func (c *decisionCache) invalidate(ev *trustfedv1.Event) {
	org := ev.GetOrganizationId()
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.GetIndex() > c.epochs[org] {
		c.epochs[org] = ev.GetIndex()
	}
	for k := range c.entries {
		if org == c.self || k.to == org || (ev.GetSessionId() != "" && k.session == ev.GetSessionId()) {
			delete(c.entries, k)
		}
	}
}

// down marks the stream lost: nothing is served, and the entries go (they
// may have been invalidated by events this gateway will never see).
func (c *decisionCache) down() {
	c.healthy.Store(false)
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// up marks the stream resynchronised at the registry's index floor.
func (c *decisionCache) up(floor uint64) {
	c.mu.Lock()
	if floor > c.floor {
		c.floor = floor
	}
	c.mu.Unlock()
	c.healthy.Store(true)
}

func (c *decisionCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// typeBits is the set of PII types as a bit mask (types outside 1..31 set
// bit 0, so that they never share a key with a valid set).
func typeBits(types []trustfedv1.PiiType) uint32 {
	var b uint32
	for _, t := range types {
		if t <= 0 || t > 31 {
			b |= 1
			continue
		}
		b |= 1 << uint32(t)
	}
	return b
}
