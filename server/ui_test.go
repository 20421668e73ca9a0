package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// uiClient is an HTTPS client of the dev server that does not follow redirects.
func uiClient(t *testing.T, d *testserver.Dev) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(d.CAFile())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// sseEvent is one server-sent event.
type sseEvent struct {
	name string
	data map[string]any
}

// openFeed opens GET /ui/events with token and returns its events; the
// stream is closed in t.Cleanup.
func openFeed(t *testing.T, hc *http.Client, d *testserver.Dev, token string) (*http.Response, <-chan sseEvent) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+d.HTTPAddr()+"/ui/events", nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	require.NoError(t, err)
	events := make(chan sseEvent, 64)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); _ = resp.Body.Close(); <-done })
	go func() {
		defer close(done)
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			case line == "" && ev.name != "":
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
				ev = sseEvent{}
			}
		}
	}()
	return resp, events
}

// nextEvent waits for the next event named name (skipping others); ok is
// false when the stream ended first.
func nextEvent(t *testing.T, events <-chan sseEvent, name string) (sseEvent, bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return sseEvent{}, false
			}
			if ev.name == name {
				return ev, true
			}
		case <-deadline:
			t.Fatalf("no %q event within 20s", name)
		}
	}
}

func methods(hello sseEvent) []string {
	var out []string
	for _, m := range hello.data["methods"].([]any) {
		out = append(out, m.(string))
	}
	return out
}

// The dashboard is served at /ui/ with a strict content security policy, /
// leads to it, and its feed at /ui/events: refused without a usable token
// (401 with a challenge); for a token, a hello naming its role and the
// methods the authorisation table lets it call, metrics samples for an
// admin, a change notice when the registry applies a write, and an
// "unauthenticated" event that ends the feed when the token is revoked.
func TestDashboardFeed(t *testing.T) {
	d := testserver.StartDev(t)
	hc := uiClient(t, d)
	admin := d.Client(t)

	resp, err := hc.Get("https://" + d.HTTPAddr() + "/ui/")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), `<script type="module" src="js/main.js">`)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "form-action 'none'")

	resp, err = hc.Get("https://" + d.HTTPAddr() + "/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/ui/", resp.Header.Get("Location"))

	for _, tok := range []string{"", "tf_not-a-real-token"} {
		resp, _ := openFeed(t, hc, d, tok)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "token %q", tok)
		require.Equal(t, `Bearer realm="trustfed"`, resp.Header.Get("WWW-Authenticate"))
	}

	create := func(role trustfedv1.TokenRole, org string) (string, string) {
		r, err := admin.Access().CreateToken(t.Context(), &trustfedv1.CreateTokenRequest{Role: role, OrganizationId: org, Description: "feed test"})
		require.NoError(t, err)
		return r.Token.Id, r.Secret
	}
	adminID, adminTok := create(trustfedv1.TokenRole_TOKEN_ROLE_ADMIN, "")
	_, regTok := create(trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, "")

	resp, events := openFeed(t, hc, d, adminTok)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	hello, ok := nextEvent(t, events, "hello")
	require.True(t, ok)
	require.Equal(t, "admin", hello.data["role"])
	require.Equal(t, true, hello.data["metrics"])
	require.Contains(t, methods(hello), trustfedv1.AccessService_ListTokens_FullMethodName)
	sample, ok := nextEvent(t, events, "metrics")
	require.True(t, ok)
	require.Contains(t, sample.data, "decisions")

	start := hello.data["index"].(float64)
	create(trustfedv1.TokenRole_TOKEN_ROLE_MONITOR, "") // a write
	change, ok := nextEvent(t, events, "change")
	require.True(t, ok)
	require.Greater(t, change.data["index"].(float64), start)

	_, regEvents := openFeed(t, hc, d, regTok)
	regHello, ok := nextEvent(t, regEvents, "hello")
	require.True(t, ok)
	require.Equal(t, "regulator", regHello.data["role"])
	require.Equal(t, false, regHello.data["metrics"])
	require.NotContains(t, methods(regHello), trustfedv1.AccessService_ListTokens_FullMethodName, "the table lets no regulator list tokens")
	require.Contains(t, methods(regHello), trustfedv1.AuditService_ListAuditEntries_FullMethodName)

	_, err = admin.Access().RevokeToken(t.Context(), &trustfedv1.RevokeTokenRequest{TokenId: adminID, Reason: "feed test"})
	require.NoError(t, err)
	ended, ok := nextEvent(t, events, "unauthenticated")
	require.True(t, ok, "the feed says why it ends")
	require.Contains(t, ended.data["message"], "revoked")
	_, ok = nextEvent(t, events, "never")
	require.False(t, ok, "the feed of a revoked token ends")
}

// A server that shuts down ends its dashboard feeds at once: an open feed
// neither holds the shutdown for its 5 s grace nor outlives the server.
func TestDashboardFeedEndsOnShutdown(t *testing.T) {
	var events <-chan sseEvent
	var stopping time.Time
	t.Run("server", func(st *testing.T) {
		d := testserver.StartDev(st)
		hc := uiClient(t, d)
		_, events = openFeed(t, hc, d, d.Info.AdminToken) // closed by the parent test, after the server
		_, ok := nextEvent(st, events, "hello")
		require.True(st, ok)
		st.Cleanup(func() { stopping = time.Now() }) // runs first: then the server stops
	})
	took := time.Since(stopping)
	_, ok := nextEvent(t, events, "never")
	require.False(t, ok, "the feed ends with the server")
	require.Less(t, took, 4*time.Second, "an open feed does not hold the shutdown")
}
