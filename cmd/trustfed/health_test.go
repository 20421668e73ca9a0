package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
)

// trustfed health asks a real node's /readyz (and /healthz with --live)
// over loopback: exit 0 on 200, with or without --cacert.
func TestHealthVerb(t *testing.T) {
	d := testserver.StartDev(t)
	code, stdout, stderr := runCLI(map[string]string{client.EnvCACert: d.CAFile()}, "health", "--http-addr", d.HTTPAddr())
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "https://"+d.HTTPAddr()+"/readyz: 200 ok\n", stdout)
	code, stdout, stderr = runCLI(nil, "health", "--live", "--http-addr", d.HTTPAddr())
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "/healthz: 200 ok")
	// A node bound to every interface is asked on loopback.
	port := d.HTTPAddr()[strings.LastIndex(d.HTTPAddr(), ":"):]
	code, _, stderr = runCLI(nil, "health", "--http-addr", "0.0.0.0"+port)
	require.Equal(t, exitOK, code, stderr)

	code, _, stderr = runCLI(nil, "health", "--http-addr", "10.1.2.3:8443")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "not a loopback address: give --cacert")
}

// A node that is not ready: exit 1 with the reason its /readyz gives.
func TestHealthVerbNotReady(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/readyz", r.URL.Path)
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"ready":false,"reason":"no leader known"}`))
	}))
	defer srv.Close()
	code, _, stderr := runCLI(nil, "health", "--http-addr", strings.TrimPrefix(srv.URL, "https://"))
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "503 no leader known")
}
