package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
