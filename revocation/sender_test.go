package revocation

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
)

func TestWebhookSenderRefusals(t *testing.T) {
	_, priv := testKey(t)
	var (
		mu    sync.Mutex
		paths []string
	)
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/redirect":
			http.Redirect(w, r, "/ok", http.StatusFound)
		case "/slow":
			<-r.Context().Done()
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	s, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "k", TLS: &tls.Config{RootCAs: pool}, Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	defer s.Close()
	n := Notification{EventID: "e"}
	send := func(endpoints ...string) error {
		_, err := s.Send(t.Context(), Target{Partner: "p", Endpoints: endpoints}, n)
		return err
	}

	require.ErrorIs(t, send(), ErrNoEndpoints)
	require.ErrorIs(t, send("http://"+srv.Listener.Addr().String()+"/ok"), ErrEndpoint, "plain http is refused")
	require.ErrorIs(t, send("/ok"), ErrEndpoint)
	require.ErrorIs(t, send(srv.URL+"/redirect"), ErrNotAcknowledged, "a redirect is not followed")
	err = send(srv.URL + "/slow")
	require.ErrorIs(t, err, context.DeadlineExceeded, "each request is bounded by the timeout")
	mu.Lock()
	require.Equal(t, []string{"/redirect", "/slow"}, paths)
	mu.Unlock()

	require.NoError(t, send(srv.URL+"/slow", srv.URL+"/ok"), "the next endpoint is tried")

	_, err = NewWebhookSender(WebhookConfig{Key: priv[:3], KeyID: "k"})
	require.Error(t, err)
	_, err = NewWebhookSender(WebhookConfig{Key: priv})
	require.Error(t, err, "a key id is required")
}

func TestWebhookSenderReusesRecentSignature(t *testing.T) {
	pub, priv := testKey(t)
	headers := make(chan http.Header, 10)
	srv, pool := tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		headers <- r.Header.Clone()
	}))
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "k", TLS: &tls.Config{RootCAs: pool}, Now: clock})
	require.NoError(t, err)
	defer s.Close()
	send := func(n Notification) http.Header {
		_, err := s.Send(t.Context(), Target{Partner: "p", Endpoints: []string{srv.URL}}, n)
		require.NoError(t, err)
		h := <-headers
		_, err = VerifyWebhook(pub, h, n.Body, now, time.Minute)
		require.NoError(t, err)
		return h
	}

	body := []byte("one")
	first := send(Notification{EventID: "e1", Body: body})
	now = now.Add(5 * time.Second)
	require.Equal(t, first.Get(HeaderSignature), send(Notification{EventID: "e1", Body: body}).Get(HeaderSignature))
	body[0] = 'O' // the caller's bytes changed: signed again
	require.NotEqual(t, first.Get(HeaderSignature), send(Notification{EventID: "e1", Body: body}).Get(HeaderSignature))
	require.NotEqual(t, first.Get(HeaderEventID), send(Notification{EventID: "e2", Body: body}).Get(HeaderEventID))
	now = now.Add(signatureReuse)
	require.Equal(t, formatTimestamp(now), send(Notification{EventID: "e2", Body: body}).Get(HeaderTimestamp), "stale signature renewed")
}

func TestFirstOf(t *testing.T) {
	fail := func(msg string) Sender {
		return SenderFunc(func(context.Context, Target, Notification) (Channel, error) { return "", errors.New(msg) })
	}
	ack := func(ch Channel) Sender {
		return SenderFunc(func(context.Context, Target, Notification) (Channel, error) { return ch, nil })
	}
	tg, n := Target{Partner: "p"}, Notification{EventID: "e"}

	ch, err := FirstOf(ack(ChannelStream), ack(ChannelWebhook)).Send(t.Context(), tg, n)
	require.NoError(t, err)
	require.Equal(t, ChannelStream, ch)

	ch, err = FirstOf(fail("no stream open"), ack(ChannelWebhook)).Send(t.Context(), tg, n)
	require.NoError(t, err)
	require.Equal(t, ChannelWebhook, ch)

	_, err = FirstOf(fail("no stream open"), fail("503")).Send(t.Context(), tg, n)
	require.ErrorContains(t, err, "no stream open")
	require.ErrorContains(t, err, "503")

	_, err = FirstOf().Send(t.Context(), tg, n)
	require.ErrorIs(t, err, ErrNoEndpoints)
}

// A partner's own CA certificates (its signed webhook settings) are trusted
// for its endpoints only, on top of the sender's roots: another partner's
// endpoint under the same CA is refused, and the configured roots still work.
func TestWebhookSenderTrustsThePartnersCA(t *testing.T) {
	_, priv := testKey(t)
	ack := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	configured, pool := tlsServer(t, ack)
	// The partner's endpoint, under a CA of its own.
	ca, err := attestation.NewCA("partner webhooks", time.Now(), time.Hour)
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueNode("hooks", []string{"127.0.0.1"}, time.Now(), time.Hour)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	private := httptest.NewUnstartedServer(ack)
	private.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	private.StartTLS()
	t.Cleanup(private.Close)
	caPEM := string(ca.CertPEM)
	s, err := NewWebhookSender(WebhookConfig{Key: priv, KeyID: "k", TLS: &tls.Config{RootCAs: pool}, Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer s.Close()
	n := Notification{EventID: "e"}

	_, err = s.Send(t.Context(), Target{Partner: "other", Endpoints: []string{private.URL}}, n)
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown, "without the partner's CA its endpoint is not trusted")
	_, err = s.Send(t.Context(), Target{Partner: "p", Endpoints: []string{private.URL}, CAPEM: caPEM}, n)
	require.NoError(t, err, "with it, it is")
	_, err = s.Send(t.Context(), Target{Partner: "p", Endpoints: []string{configured.URL}, CAPEM: caPEM}, n)
	require.NoError(t, err, "the sender's own roots still count for that partner")
	s.Close() // no idle connection to reuse: the next request makes a new TLS handshake
	_, err = s.Send(t.Context(), Target{Partner: "other", Endpoints: []string{private.URL}}, n)
	require.ErrorAs(t, err, &unknown, "a TLS session made under the partner's CA is not resumed for another partner")
	_, err = s.Send(t.Context(), Target{Partner: "p", Endpoints: []string{private.URL}, CAPEM: "not PEM"}, n)
	require.ErrorIs(t, err, ErrEndpoint)
}
