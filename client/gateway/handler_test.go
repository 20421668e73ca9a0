package gateway_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/client/gateway"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
)

func post(t *testing.T, h http.Handler, method string, body []byte, peer *x509.Certificate) (int, *gatewayv1.Reply) {
	t.Helper()
	req := httptest.NewRequestWithContext(ctxT(t), method, "/trustfed/envelope", bytes.NewReader(body))
	if peer != nil {
		req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{peer}}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, err := io.ReadAll(rec.Result().Body)
	require.NoError(t, err)
	var reply gatewayv1.Reply
	require.NoError(t, proto.Unmarshal(b, &reply))
	return rec.Code, &reply
}

// TestHandlerStatusCodes: the HTTP binding of docs/envelope.md: 405 for
// another method, 400 for an envelope that does not parse, 403 when the
// TLS peer is not the envelope's sender node, 200 when accepted.
func TestHandlerStatusCodes(t *testing.T) {
	tr := startTrio(t)
	env, _ := tr.envelope(t, "bank-b")
	raw, err := proto.Marshal(env)
	require.NoError(t, err)
	h := tr.b.Handler()

	code, reply := post(t, h, http.MethodGet, nil, nil)
	require.Equal(t, http.StatusMethodNotAllowed, code)
	require.Equal(t, string(gateway.CodeMalformed), reply.Code)

	code, reply = post(t, h, http.MethodPost, []byte("not an envelope \xff\xff"), nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, string(gateway.CodeMalformed), reply.Code)

	code, reply = post(t, h, http.MethodPost, raw, tr.c.member.Leaf)
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, string(gateway.CodeBadSender), reply.Code, reply.Message)

	code, reply = post(t, h, http.MethodPost, raw, tr.a.Certificate())
	require.Equal(t, http.StatusOK, code, reply.Message)
	require.True(t, reply.Accepted)

	code, reply = post(t, h, http.MethodPost, raw, tr.a.Certificate())
	require.Equal(t, http.StatusForbidden, code)
	require.Equal(t, string(gateway.CodeReplayed), reply.Code)
}

// TestRegistryFailover: with the first registry address unreachable the
// gateway obtains its certificate, keeps its stream and decides through
// the next one.
func TestRegistryFailover(t *testing.T) {
	f := startFed(t, []string{"bank-a", "bank-b"}, "task_send")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	a := f.start(t, "bank-a", listen(t), nil, func(c *gateway.Config) {
		c.Transport, c.Registries = newCapture(), []string{dead, f.dev.GRPCAddr()}
	})
	require.True(t, a.Healthy())
	_, err = a.Send(ctxT(t), "bank-b", "task_send", []byte("x"), gateway.SendOptions{})
	require.NoError(t, err)
}
