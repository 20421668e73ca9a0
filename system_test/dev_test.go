package system_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
)

type devServer struct {
	srv    *testutil.Server
	token  string
	caFile string
	http   *http.Client
	base   string
}

func startDev(t testing.TB) *devServer {
	t.Helper()
	dir := t.TempDir()
	srv := testutil.StartServer(t, bin, dir, append([]string{"-dev"}, loopbackPorts...)...)
	d := &devServer{srv: srv, token: adminToken(t, dir), caFile: srv.Addrs.CACert, base: "https://" + srv.Addrs.HTTPAddr}
	pem, err := os.ReadFile(d.caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	d.http = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
	t.Cleanup(d.http.CloseIdleConnections)
	testutil.Eventually(t, 30*time.Second, "dev server prints its banner", func() error {
		if !strings.Contains(srv.Stdout.String(), "admin token") {
			return errors.New("no banner yet")
		}
		return nil
	})
	return d
}

// do sends a REST request and returns the status and the decoded JSON body.
func (d *devServer) do(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, d.base+path, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &out), "body: %s", b)
	}
	return resp.StatusCode, out
}

// cli runs the trustfed CLI against the dev server and returns stdout,
// stderr and the exit code.
func (d *devServer) cli(t *testing.T, token string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TRUSTFED_ADDR="+d.srv.Addrs.GRPCAddr, "TRUSTFED_TOKEN="+token, "TRUSTFED_CACERT="+d.caFile, "TRUSTFED_TOKEN_FILE=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestDevServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d := startDev(t)

	t.Run("token is stored hashed, file is private", func(t *testing.T) {
		fi, err := os.Stat(filepath.Join(d.srv.DataDir, "admin.token"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	})

	t.Run("REST without a token is 401", func(t *testing.T) {
		code, body := d.do(t, "GET", "/v1/organizations", "", nil)
		require.Equal(t, http.StatusUnauthorized, code)
		require.Contains(t, body["message"], "Bearer")
		code, _ = d.do(t, "GET", "/v1/organizations", "tf_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil)
		require.Equal(t, http.StatusUnauthorized, code)
	})

	t.Run("OpenAPI document is served", func(t *testing.T) {
		code, body := d.do(t, "GET", "/v1/openapi.json", "", nil)
		require.Equal(t, http.StatusOK, code)
		paths, ok := body["paths"].(map[string]any)
		require.True(t, ok)
		require.Contains(t, paths, "/v1/interactions:check")
		require.Contains(t, paths, "/v1/organizations")
	})

	t.Run("REST walk-through", func(t *testing.T) {
		code, body := d.do(t, "POST", "/v1/organizations", d.token, map[string]any{"organization_id": "acme-bank", "name": "Acme Bank", "declared_level": 3})
		require.Equal(t, http.StatusOK, code, "%v", body)
		org := body["organization"].(map[string]any)
		require.Equal(t, "acme-bank", org["id"])
		require.Equal(t, "ORGANIZATION_STATUS_ACTIVE", org["status"])
		code, body = d.do(t, "POST", "/v1/organizations", d.token, map[string]any{"organizationId": "st-mary", "name": "St Mary Hospital", "declaredLevel": 2})
		require.Equal(t, http.StatusOK, code, "%v", body)

		code, body = d.do(t, "POST", "/v1/interactions:check", d.token, map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "st-mary", "action": "task_send"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "DECISION_DENY", body["decision"], "no agreement yet")
		reasons := body["reasons"].([]any)
		require.Equal(t, "NO_AGREEMENT", reasons[0].(map[string]any)["code"])

		code, body = d.do(t, "POST", "/v1/agreements", d.token, map[string]any{"organization_a_id": "acme-bank", "organization_b_id": "st-mary"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		agr := body["agreement"].(map[string]any)["id"].(string)

		code, body = d.do(t, "POST", "/v1/interactions:check", d.token, map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "st-mary", "action": "task_send"})
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "DECISION_ALLOW", body["decision"])
		require.EqualValues(t, 2, body["effectiveLevel"])
		require.Equal(t, agr, body["agreementId"])
		meta := body["meta"].(map[string]any)
		require.NotEqual(t, "0", meta["index"], "the decision names the raft index")

		code, body = d.do(t, "POST", "/v1/interactions:check", d.token, map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "st-mary", "action": "context_share"})
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "DECISION_DENY", body["decision"], "context_share needs level 3; effective is 2")

		code, body = d.do(t, "PATCH", "/v1/organizations/st-mary", d.token, map[string]any{"declared_level": 4})
		require.Equal(t, http.StatusOK, code, "%v", body)
		code, body = d.do(t, "GET", "/v1/organizations/st-mary", d.token, nil)
		require.Equal(t, http.StatusOK, code)
		require.EqualValues(t, 4, body["organization"].(map[string]any)["declaredLevel"])
	})

	t.Run("bad input: precise status naming the field, nothing stored", func(t *testing.T) {
		cases := []struct {
			method, path string
			body         any
			code         int
			field        string
		}{
			{"POST", "/v1/organizations", map[string]any{"organization_id": "x-org", "name": "X", "declared_level": 7}, 400, "declared_level"},
			{"POST", "/v1/organizations", map[string]any{"organization_id": "Bad Id", "name": "X", "declared_level": 1}, 400, "organization_id"},
			{"POST", "/v1/organizations", map[string]any{"organization_id": "acme-bank", "name": "Other", "declared_level": 1}, 409, "organization_id"},
			{"POST", "/v1/organizations", map[string]any{"organization_id": "x-org", "name": "x", "bogus": 1}, 400, "bogus"},
			{"POST", "/v1/interactions:check", map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "nobody", "action": "ping"}, 404, "to_organization_id"},
			{"POST", "/v1/interactions:check", map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "acme-bank", "action": "ping"}, 400, "to_organization_id"},
			{"POST", "/v1/interactions:check", map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "st-mary", "action": "fly"}, 400, "action"},
			{"POST", "/v1/agreements", map[string]any{"organization_a_id": "acme-bank", "organization_b_id": "ghost"}, 404, "organization_b_id"},
			{"GET", "/v1/organizations/ghost", nil, 404, "organization_id"},
			{"GET", "/v1/agreements/agr-nothex", nil, 400, "agreement_id"},
		}
		for _, tc := range cases {
			code, body := d.do(t, tc.method, tc.path, d.token, tc.body)
			require.Equal(t, tc.code, code, "%s %s %v: %v", tc.method, tc.path, tc.body, body)
			require.Contains(t, fmt.Sprint(body["message"]), tc.field, "%s %s", tc.method, tc.path)
		}
		code, body := d.do(t, "GET", "/v1/organizations/x-org", d.token, nil)
		require.Equal(t, http.StatusNotFound, code, "refused creates stored nothing: %v", body)
	})

	t.Run("CLI", func(t *testing.T) {
		out, errOut, code := d.cli(t, d.token, "org", "create", "city-gov", "--name", "City Government", "--level", "4")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "city-gov")

		out, errOut, code = d.cli(t, d.token, "org", "list", "-o", "json")
		require.Equal(t, 0, code, errOut)
		var list struct {
			Organizations []struct {
				ID string `json:"id"`
			} `json:"organizations"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		require.Len(t, list.Organizations, 3)

		_, errOut, code = d.cli(t, d.token, "agreement", "create", "city-gov", "acme-bank")
		require.Equal(t, 0, code, errOut)
		out, errOut, code = d.cli(t, d.token, "check", "--from", "city-gov", "--to", "acme-bank", "--action", "context_share")
		require.Equal(t, 0, code, "ALLOW exits 0: %s %s", out, errOut)
		require.Contains(t, out, "ALLOW")
		out, _, code = d.cli(t, d.token, "check", "--from", "city-gov", "--to", "acme-bank", "--action", "agent_spawn")
		require.Equal(t, 3, code, "DENY exits 3: %s", out)
		require.Contains(t, out, "DENY")

		out, errOut, code = d.cli(t, d.token, "org", "set-level", "city-gov", "2")
		require.Equal(t, 0, code, errOut)
		out, errOut, code = d.cli(t, d.token, "status")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, "Leader")

		_, errOut, code = d.cli(t, "", "org", "list")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "Unauthenticated")
	})

	require.NoError(t, d.srv.Stop(), "clean shutdown on SIGTERM")
}
