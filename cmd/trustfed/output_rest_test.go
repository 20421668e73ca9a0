package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
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
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
)

// compactJSON removes insignificant whitespace (protojson varies it on
// purpose), so two encodings of one message compare byte for byte.
func compactJSON(t *testing.T, data []byte) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, data), "%s", data)
	return b.String()
}

// -o json is the encoding REST answers with: protojson, lowerCamelCase,
// empty lists and zero values kept, the read's freshness under "meta".
func TestCLIJSONIsRESTJSON(t *testing.T) {
	s := startRealServer(t)
	s.federation(t, "acme-bank")
	for _, tc := range []struct {
		args []string
		path string
	}{
		{[]string{"org", "get", "acme-bank"}, "/v1/organizations/acme-bank"},
		{[]string{"org", "list"}, "/v1/organizations"},
		{[]string{"issuer", "list"}, "/v1/issuers"},
		{[]string{"revocation", "list"}, "/v1/revocations"}, // no cascades: an empty list
		{[]string{"agreement", "list"}, "/v1/agreements"},   // none either
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, _ := s.run(t, exitOK, append(tc.args, "-o", "json")...)
			code, body := s.Get(t, tc.path)
			require.Equal(t, http.StatusOK, code, "%s", body)
			require.Equal(t, compactJSON(t, body), compactJSON(t, []byte(out)))
		})
	}
	// Plain (non-protobuf) answers use lowerCamelCase keys too.
	out, _ := s.run(t, exitOK, "keygen", "--out", s.path("k.key"), "-o", "json")
	require.Contains(t, out, `"privateKeyFile"`)
	require.NotContains(t, out, `_`+`file"`)
}

// The member-nodes URL has one parameter name in the OpenAPI document; the
// REST URL users call keeps working for both methods, and a path naming
// another organisation than the signed enrolment is refused, naming the field.
func TestRESTMemberNodesURL(t *testing.T) {
	s := startRealServer(t)
	s.federation(t, "acme-bank", "globex")
	orgKey, err := attestation.LoadPrivateKey(s.path("acme-bank.key"))
	require.NoError(t, err)
	nodePub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	req, err := client.NewMemberEnrolment(orgKey, "acme-bank", "gw-1", nodePub, time.Now())
	require.NoError(t, err)
	body, err := protojson.Marshal(req)
	require.NoError(t, err)

	code, out := s.post(t, "/v1/organizations/globex/member-nodes", body)
	require.Equal(t, http.StatusBadRequest, code, "%s", out)
	require.Contains(t, string(out), "organization_id")

	code, out = s.post(t, "/v1/organizations/acme-bank/member-nodes", body)
	require.Equal(t, http.StatusOK, code, "%s", out)
	require.Contains(t, string(out), `"nodeId":"gw-1"`)

	code, out = s.Get(t, "/v1/organizations/acme-bank/member-nodes")
	require.Equal(t, http.StatusOK, code, "%s", out)
	require.Contains(t, string(out), `"nodeId":"gw-1"`)
}

// post POSTs body over HTTPS as the bootstrap admin.
func (s *realServer) post(t *testing.T, path string, body []byte) (int, []byte) {
	t.Helper()
	pem, err := os.ReadFile(s.CAFile())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+s.HTTPAddr()+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.Info.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, compactBytes(out)
}

func compactBytes(b []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return b
	}
	return out.Bytes()
}
