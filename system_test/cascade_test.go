package system_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"github.com/trustfed/trustfed/revocation"
)

// receivers is one HTTPS server in the test process hosting every
// partner's webhook endpoint at /p/<org>. Each delivery's signature is
// verified with the registry's published key; a partner can be held down
// (503) for a while.
type receivers struct {
	srv *httptest.Server
	mu  sync.Mutex
	// keys are the registry's published keys (GET /v1/keys): a webhook is
	// verified with the key its Trustfed-Key-Id names, valid at its time.
	keys attestation.DecisionKeys
	// signedBy counts accepted webhooks by the node id of the signing key
	// ("" for the registry key).
	signedBy map[string]int
	down     map[string]int      // partner -> deliveries still refused (-1: until released)
	got      map[string][]string // partner -> event ids accepted (in order)
	bad      []string
}

func newReceivers(t testing.TB) *receivers {
	rc := &receivers{down: map[string]int{}, got: map[string][]string{}, signedBy: map[string]int{}}
	rc.srv = httptest.NewTLSServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

// caFile writes the receivers' certificate for the servers' -webhook-ca.
func (rc *receivers) caFile(t testing.TB) string {
	path := filepath.Join(t.TempDir(), "webhook-ca.pem")
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: rc.srv.Certificate().Raw}), 0o600))
	return path
}

func (rc *receivers) endpoint(org string) string { return rc.srv.URL + "/p/" + org }

func (rc *receivers) serve(w http.ResponseWriter, r *http.Request) {
	org := strings.TrimPrefix(r.URL.Path, "/p/")
	body, err := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if n := rc.down[org]; n != 0 {
		if n > 0 {
			rc.down[org] = n - 1
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if err != nil || rc.keys == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	id, err := revocation.VerifyWebhookWithKeys(rc.keys, r.Header, body, time.Now(), revocation.DefaultWebhookMaxSkew)
	if err != nil {
		rc.bad = append(rc.bad, fmt.Sprintf("%s: %v", org, err))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.got[org] = append(rc.got[org], id)
	rc.signedBy[rc.keys[r.Header.Get(revocation.HeaderKeyID)].GetNodeId()]++
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receivers) set(f func(rc *receivers)) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	f(rc)
}

// cascadeOf waits for and returns the newest cascade about org.
func cascadeOf(t testing.TB, c *client.Client, org string) *trustfedv1.Cascade {
	t.Helper()
	resp, err := c.Cascades().ListCascades(ctxT(t), &trustfedv1.ListCascadesRequest{OrganizationId: org})
	require.NoError(t, err)
	var last *trustfedv1.Cascade
	for _, cs := range resp.Cascades {
		if last == nil || cs.CreateIndex > last.CreateIndex {
			last = cs
		}
	}
	require.NotNil(t, last, "no cascade about %s", org)
	return last
}

func waitCascade(t testing.TB, c *client.Client, id, what string, done func(*trustfedv1.Cascade) error) *trustfedv1.Cascade {
	t.Helper()
	var got *trustfedv1.Cascade
	testutil.Eventually(t, 90*time.Second, what, func() error {
		resp, err := c.Cascades().GetCascade(ctxT(t), &trustfedv1.GetCascadeRequest{CascadeId: id})
		if err != nil {
			return err
		}
		got = resp.Cascade
		return done(got)
	})
	return got
}

func complete(c *trustfedv1.Cascade) error {
	if c.CompleteTime == nil {
		return fmt.Errorf("%d of %d acknowledged", c.Acked, len(c.Deliveries))
	}
	return nil
}

// TestTC2RevocationCascade: an organisation with 50 partners (40 webhook
// receivers, 10 watching the event stream on various nodes) is revoked;
// every check involving it is denied at once on all three nodes, every
// partner is notified and acknowledges, each delivery is recorded with its
// timestamps, all within the deadline. Then: a partner that is down for a
// while is retried and acked; one that never answers is escalated; a
// cascade survives the loss of its leader without acking anyone twice.
func TestTC2RevocationCascade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	rc := newReceivers(t)
	c := startCluster(t, "-webhook-ca", rc.caFile(t), "-cascade-deadline", "20s", "-cascade-escalate-at", "0.25")
	all := []string{"n1", "n2", "n3"}
	leader := c.leader(t, all...)
	lc := c.clients[leader]
	keys, err := lc.Keys(ctxT(t))
	require.NoError(t, err)
	rc.set(func(rc *receivers) { rc.keys = webhookKey(t, keys) })
	accredit(t, lc, c.fed, c.admins)

	// The federation: hub with 50 partners; hub-two with one partner that
	// never answers; hub-three with 5 partners for the fail-over.
	var webhookPartners, streamPartners []string
	withEndpoint := func(org string) func(*trustfedv1.Registration) {
		return func(r *trustfedv1.Registration) { r.NotificationEndpoints = []string{rc.endpoint(org)} }
	}
	for _, hub := range []string{"hub", "hub-two", "hub-three"} {
		enrol(t, lc, c.fed, hub, 3)
	}
	for i := range 50 {
		org := fmt.Sprintf("p-%02d", i)
		if i < 40 {
			webhookPartners = append(webhookPartners, org)
			enrol(t, lc, c.fed, org, 3, withEndpoint(org))
		} else {
			streamPartners = append(streamPartners, org)
			enrol(t, lc, c.fed, org, 3)
		}
		agree(t, lc, c.fed, "hub", org, "task_send")
	}
	enrol(t, lc, c.fed, "p-never", 3, withEndpoint("p-never"))
	agree(t, lc, c.fed, "hub-two", "p-never", "ping")
	var failover []string
	for i := range 5 {
		org := fmt.Sprintf("f-%d", i)
		failover = append(failover, org)
		enrol(t, lc, c.fed, org, 3, withEndpoint(org))
		agree(t, lc, c.fed, "hub-three", org, "ping")
	}
	graph, err := c.clients[all[0]].Cascades().GetOrganizationGraph(ctxT(t), &trustfedv1.GetOrganizationGraphRequest{OrganizationId: "hub"})
	require.NoError(t, err)
	require.Len(t, graph.Partners, 50, "the graph is pre-computed by the state machine")

	// Stream partners watch on all three nodes and ack what they receive.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var streamMu sync.Mutex
	streamed := map[string][]string{}
	for i, org := range streamPartners {
		cl := testutil.EnrolMember(t, lc, c.fed, org, "").Dial(t, baseConfig(c.servers[all[i%3]], c.pki.CAFile))
		wg.Add(1)
		go func() {
			defer wg.Done()
			watchAndAck(ctx, cl, org, func(id string) {
				streamMu.Lock()
				streamed[org] = append(streamed[org], id)
				streamMu.Unlock()
			})
		}()
	}
	p07 := c.memberClients(t, lc, "p-07")

	// p-03 is down for its first 3 deliveries.
	rc.set(func(rc *receivers) { rc.down["p-03"] = 3; rc.down["p-never"] = -1 })

	// Revoke hub: two admins approve, through two different nodes.
	revoke := testutil.SetStatus("hub", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED)
	revoke.Reason = "key compromised"
	rec := c.admins.apply(t, revoke, c.clients[all[0]], c.clients[all[1]])
	require.Equal(t, trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED, rec.Status)
	for _, id := range all {
		resp, err := p07[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{
			FromOrganizationId: "p-07", ToOrganizationId: "hub", Action: "task_send"})
		require.NoError(t, err, id)
		require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision, "%s answers with the revocation at once", id)
		require.GreaterOrEqual(t, resp.Meta.Index, rec.ApplyIndex, id)
	}

	cas := cascadeOf(t, lc, "hub")
	require.Equal(t, trustfedv1.EventKind_EVENT_KIND_REVOCATION, cas.Event.Kind)
	require.Len(t, cas.Deliveries, 50)
	cas = waitCascade(t, lc, cas.Id, "all 50 partners acknowledge", complete)
	require.EqualValues(t, 50, cas.Acked)
	for _, d := range cas.Deliveries {
		require.NotNil(t, d.DispatchTime, d.OrganizationId)
		require.NotNil(t, d.FirstAttemptTime, d.OrganizationId)
		require.NotNil(t, d.AckTime, d.OrganizationId)
		require.GreaterOrEqual(t, d.Attempts, uint32(1), d.OrganizationId)
		require.Less(t, d.AckTime.AsTime().Sub(cas.StartTime.AsTime()), 20*time.Second, "%s acked within the deadline", d.OrganizationId)
		want := trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK
		if strings.Compare(d.OrganizationId, "p-40") >= 0 {
			want = trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_STREAM
		}
		require.Equal(t, want, d.Channel, d.OrganizationId)
		require.Nil(t, d.EscalateTime, d.OrganizationId)
	}
	p03, _ := state.FindDelivery(cas, "p-03")
	require.GreaterOrEqual(t, p03.Attempts, uint32(4), "p-03 was down for 3 deliveries and retried")
	rc.set(func(rc *receivers) {
		require.Empty(t, rc.bad, "every webhook verified with the key its Trustfed-Key-Id names in GET /v1/keys")
		require.Zero(t, rc.signedBy[""], "no webhook is signed with the registry key")
		require.Positive(t, rc.signedBy[leader], "the leader signs with its own endorsed node key")
		for _, org := range webhookPartners {
			require.Contains(t, rc.got[org], cas.Id, org)
		}
	})
	streamMu.Lock()
	for _, org := range streamPartners {
		require.Contains(t, streamed[org], cas.Id, org)
	}
	streamMu.Unlock()

	t.Run("a partner that never answers is escalated, then acked when it returns", func(t *testing.T) {
		revoke := testutil.SetStatus("hub-two", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED)
		c.admins.apply(t, revoke, lc)
		cas := cascadeOf(t, lc, "hub-two")
		cas = waitCascade(t, lc, cas.Id, "p-never escalated", func(cs *trustfedv1.Cascade) error {
			if cs.Deliveries[0].EscalateTime == nil {
				return errors.New("not escalated yet")
			}
			return nil
		})
		require.Nil(t, cas.CompleteTime)
		require.Nil(t, cas.Deliveries[0].AckTime)
		require.GreaterOrEqual(t, cas.Deliveries[0].EscalateTime.AsTime().Sub(cas.StartTime.AsTime()), 5*time.Second, "escalated at 0.25 of the 20s deadline")
		rc.set(func(rc *receivers) { rc.down["p-never"] = 0 })
		cas = waitCascade(t, lc, cas.Id, "p-never acked once back", complete)
		require.Equal(t, trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK, cas.Deliveries[0].Channel)
	})

	t.Run("the leader dies mid-cascade: the new leader finishes it", func(t *testing.T) {
		rc.set(func(rc *receivers) {
			for _, org := range failover {
				rc.down[org] = -1
			}
		})
		leader := c.leader(t, all...)
		var others []string
		for _, id := range all {
			if id != leader {
				others = append(others, id)
			}
		}
		revoke := testutil.SetStatus("hub-three", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED)
		c.admins.apply(t, revoke, c.clients[others[0]])
		cas := cascadeOf(t, c.clients[others[0]], "hub-three")
		waitCascade(t, c.clients[others[0]], cas.Id, "attempts recorded by the first leader", func(cs *trustfedv1.Cascade) error {
			for _, d := range cs.Deliveries {
				if d.Attempts == 0 {
					return fmt.Errorf("%s: no attempt recorded yet", d.OrganizationId)
				}
			}
			return nil
		})
		c.servers[leader].Kill()
		newLeader := c.leader(t, others...)
		rc.set(func(rc *receivers) {
			for _, org := range failover {
				rc.down[org] = 0
			}
		})
		cas = waitCascade(t, c.clients[newLeader], cas.Id, "the new leader finishes the cascade", complete)
		for _, d := range cas.Deliveries {
			require.NotNil(t, d.AckTime, d.OrganizationId)
			require.Equal(t, trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK, d.Channel)
			require.GreaterOrEqual(t, d.Attempts, uint32(2), "%s: the record kept the first leader's attempts", d.OrganizationId)
		}
		rc.set(func(rc *receivers) {
			for _, org := range failover {
				require.Contains(t, rc.got[org], cas.Id, org)
			}
		})
	})
}

// watchAndAck watches org's events through cl (reconnecting after errors)
// and acknowledges each, until ctx ends.
func watchAndAck(ctx context.Context, cl *client.Client, org string, seen func(id string)) {
	for ctx.Err() == nil {
		stream, err := cl.Cascades().WatchEvents(ctx, &trustfedv1.WatchEventsRequest{OrganizationId: org})
		if err == nil {
			for {
				msg, err := stream.Recv()
				if err != nil {
					break
				}
				ev := msg.GetEvent()
				seen(ev.Id)
				for ctx.Err() == nil {
					if _, err := cl.Cascades().AckEvent(ctx, &trustfedv1.AckEventRequest{EventId: ev.Id, OrganizationId: org}); err == nil {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// webhookKey is the key webhooks are signed with: the cluster's registry
// key (the published key without a node id), not a node's own key.
func webhookKey(t testing.TB, keys attestation.DecisionKeys) attestation.DecisionKeys {
	t.Helper()
	if !attestation.NodeKeysPublished(slices.Collect(maps.Values(keys))) {
		t.Fatal("GET /v1/keys lists no node key")
	}
	return keys
}
