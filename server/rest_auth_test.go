package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/internal/testutil/testserver"
)

// A REST 401 carries an RFC 6750 challenge in WWW-Authenticate (not the
// error text), and the body says what is wrong without mentioning client
// certificates, which REST never accepts.
func TestRESTUnauthorizedIsABearerChallenge(t *testing.T) {
	d := testserver.StartDev(t)
	pem, err := os.ReadFile(d.CAFile())
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	t.Cleanup(hc.CloseIdleConnections)

	for _, tc := range []struct {
		name, auth, challenge, body string
	}{
		{"no token", "", `Bearer realm="trustfed"`, `send "Authorization: Bearer <token>"`},
		{"unknown token", "Bearer tf_" + "0123456789ab_" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", `Bearer realm="trustfed", error="invalid_token"`, "token"},
		{"not a bearer token", "Basic dXNlcjpwYXNz", `Bearer realm="trustfed", error="invalid_request"`, `"Bearer <token>"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+d.HTTPAddr()+"/v1/organizations", nil)
			require.NoError(t, err)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := hc.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.Equal(t, tc.challenge, resp.Header.Get("WWW-Authenticate"))
			var body struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
			require.Equal(t, 16, body.Code) // UNAUTHENTICATED
			require.Contains(t, body.Message, tc.body)
			require.NotContains(t, body.Message, "certificate")
		})
	}
}
