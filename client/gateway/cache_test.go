package gateway

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func allow(to string, index uint64, validUntil time.Time) *decided {
	st := &trustfedv1.DecisionStatement{FromOrganizationId: "bank-a", ToOrganizationId: to, Action: "task_send",
		Decision: trustfedv1.Decision_DECISION_ALLOW, Index: index, ValidUntil: timestamppb.New(validUntil)}
	return &decided{st: st, validUntil: validUntil.UnixNano()}
}

// TestCacheNeverServesPastValidUntil: a hit is served up to, never at or
// after, the decision's valid_until.
func TestCacheNeverServesPastValidUntil(t *testing.T) {
	c := newDecisionCache("bank-a")
	c.up(1)
	until := time.Unix(1000, 0)
	k := cacheKey{to: "bank-b", action: "task_send"}
	c.put(k, allow("bank-b", 5, until))
	require.NotNil(t, c.get(k, until.Add(-time.Nanosecond).UnixNano()))
	require.Nil(t, c.get(k, until.UnixNano()))
	require.Nil(t, c.get(k, until.Add(time.Hour).UnixNano()))
}

// TestCacheStopsServingWhenTheStreamIsDown: down empties the cache and
// nothing is stored or served until up.
func TestCacheStopsServingWhenTheStreamIsDown(t *testing.T) {
	c := newDecisionCache("bank-a")
	until := time.Now().Add(time.Minute)
	k := cacheKey{to: "bank-b", action: "task_send"}
	c.put(k, allow("bank-b", 5, until))
	require.Nil(t, c.get(k, time.Now().UnixNano()), "not served before the stream is up")
	c.up(1)
	c.put(k, allow("bank-b", 5, until))
	require.NotNil(t, c.get(k, time.Now().UnixNano()))
	c.down()
	require.Nil(t, c.get(k, time.Now().UnixNano()))
	c.up(10)
	require.Nil(t, c.get(k, time.Now().UnixNano()), "emptied by down")
	c.put(k, allow("bank-b", 9, until))
	require.Nil(t, c.get(k, time.Now().UnixNano()), "a decision older than the reconnection floor is not stored")
	require.True(t, c.stale(allow("bank-b", 9, until).st))
}

// TestCacheInvalidation: an event about a partner drops its entries and
// makes older decisions about it stale; an event about the gateway's own
// organisation drops everything; a session end drops the session's.
func TestCacheInvalidation(t *testing.T) {
	c := newDecisionCache("bank-a")
	c.up(1)
	until := time.Now().Add(time.Minute)
	now := time.Now().UnixNano()
	kb, kc := cacheKey{to: "bank-b", action: "task_send"}, cacheKey{to: "bank-c", action: "task_send"}
	ks := cacheKey{to: "bank-c", action: "task_send", session: "ses-1"}
	for k, to := range map[cacheKey]string{kb: "bank-b", kc: "bank-c", ks: "bank-c"} {
		c.put(k, allow(to, 5, until))
	}
	c.invalidate(&trustfedv1.Event{OrganizationId: "bank-b", Index: 7})
	require.Nil(t, c.get(kb, now))
	require.NotNil(t, c.get(kc, now))
	require.True(t, c.stale(allow("bank-b", 6, until).st))
	require.False(t, c.stale(allow("bank-b", 7, until).st))
	c.put(kb, allow("bank-b", 6, until))
	require.Nil(t, c.get(kb, now), "a decision older than the event is not stored")

	c.invalidate(&trustfedv1.Event{OrganizationId: "bank-x", SessionId: "ses-1", Index: 8})
	require.Nil(t, c.get(ks, now))
	require.NotNil(t, c.get(kc, now))

	c.invalidate(&trustfedv1.Event{OrganizationId: "bank-a", Index: 9})
	require.Zero(t, c.len(), "an event about the gateway's own organisation drops everything")
}

// TestReplayStore: a nonce is refused while remembered, forgotten after
// its ttl, and a store full of live nonces refuses new ones.
func TestReplayStore(t *testing.T) {
	r := newReplayStore(3, time.Minute)
	t0 := time.Unix(1000, 0)
	fresh, full := r.add("a", t0)
	require.True(t, fresh)
	require.False(t, full)
	fresh, _ = r.add("a", t0.Add(59*time.Second))
	require.False(t, fresh, "replay")
	for _, k := range []string{"b", "c"} {
		fresh, _ = r.add(k, t0.Add(time.Second))
		require.True(t, fresh)
	}
	fresh, full = r.add("d", t0.Add(2*time.Second))
	require.False(t, fresh)
	require.True(t, full, "full of live nonces: refuse, never forget one early")
	fresh, _ = r.add("a", t0.Add(time.Minute))
	require.True(t, fresh, "forgotten after its ttl (send_time is then outside the window)")
	fresh, _ = r.add("d", t0.Add(61*time.Second))
	require.True(t, fresh)
}
