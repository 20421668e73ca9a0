package system_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
)

// Tokens for people over real HTTP (the gateway's mapping of the
// AccessService) and the CLI, against a dev server: created with the
// secret shown once, listed without secrets, used, revoked (refused on the
// next call); expiry is checked with a clock by registry's
// TestTokenAuthentication.
func TestTokensOverREST(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d := startDev(t)
	code, second := d.do(t, "POST", "/v1/tokens", d.token, map[string]any{"role": "TOKEN_ROLE_ADMIN", "description": "a second admin", "ttl": "3600s"})
	require.Equal(t, http.StatusOK, code, "%v", second)
	shortSecret := second["secret"].(string)

	t.Run("validation names the field", func(t *testing.T) {
		for _, tc := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"description": "no role"}, "role"},
			{map[string]any{"role": "TOKEN_ROLE_GOVERNANCE", "description": "no org"}, "organization_id"},
			{map[string]any{"role": "TOKEN_ROLE_REGULATOR"}, "description"},
			{map[string]any{"role": "TOKEN_ROLE_REGULATOR", "description": "too long", "ttl": fmt.Sprintf("%ds", 367*24*3600)}, "ttl"},
		} {
			code, body := d.do(t, "POST", "/v1/tokens", d.token, tc.body)
			require.Equal(t, http.StatusBadRequest, code, "%v", body)
			require.Contains(t, body["message"], tc.field+":", "%v", body)
		}
	})

	// A governance token for an organisation that has not registered yet.
	code, gov := d.do(t, "POST", "/v1/tokens", d.token, map[string]any{
		"role": "TOKEN_ROLE_GOVERNANCE", "organization_id": "acme-bank", "description": "Acme Bank governance desk", "ttl": "3600s"})
	require.Equal(t, http.StatusOK, code, "%v", gov)
	govInfo := gov["token"].(map[string]any)
	govID, govSecret := govInfo["id"].(string), gov["secret"].(string)
	require.True(t, strings.HasPrefix(govSecret, "tf_"+govID+"_"), "the secret names the token id")
	require.Equal(t, "TOKEN_ROLE_GOVERNANCE", govInfo["role"])
	require.Equal(t, "acme-bank", govInfo["organizationId"])
	require.True(t, strings.HasPrefix(govInfo["createdBy"].(string), "token:"), "%v", govInfo)
	expire, err := time.Parse(time.RFC3339, govInfo["expireTime"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), expire, time.Minute)

	t.Run("listed without secrets", func(t *testing.T) {
		code, body := d.do(t, "GET", "/v1/tokens?organization_id=acme-bank", d.token, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		toks := body["tokens"].([]any)
		require.Len(t, toks, 1)
		require.Equal(t, govID, toks[0].(map[string]any)["id"])
		code, body = d.do(t, "GET", "/v1/tokens", d.token, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Len(t, body["tokens"].([]any), 3, "bootstrap, second admin and governance: %v", body)
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		for _, secret := range []string{d.token, govSecret, shortSecret} {
			require.NotContains(t, string(raw), secret)
		}
		require.NotContains(t, strings.ToLower(string(raw)), "secret")
	})

	t.Run("a token authenticates; its role decides", func(t *testing.T) {
		code, body := d.do(t, "GET", "/v1/tokens", govSecret, nil)
		require.Equal(t, http.StatusForbidden, code, "a governance token may not manage tokens: %v", body)
		code, body = d.do(t, "GET", "/v1/tokens", shortSecret, nil)
		require.Equal(t, http.StatusOK, code, "a new admin token works at once: %v", body)
	})

	t.Run("revoked: refused on the next call", func(t *testing.T) {
		code, body := d.do(t, "POST", "/v1/tokens/"+govID+":revoke", d.token, map[string]any{"reason": "desk closed"})
		require.Equal(t, http.StatusOK, code, "%v", body)
		info := body["token"].(map[string]any)
		require.Equal(t, "desk closed", info["revokeReason"])
		require.NotEmpty(t, info["revokeTime"])

		code, body = d.do(t, "GET", "/v1/tokens", govSecret, nil)
		require.Equal(t, http.StatusUnauthorized, code, "%v", body)
		require.Contains(t, body["message"], "revoked")

		code, body = d.do(t, "POST", "/v1/tokens/"+govID+":revoke", d.token, map[string]any{"reason": "again"})
		require.Equal(t, http.StatusBadRequest, code, "revoked twice (FailedPrecondition): %v", body)
		require.Contains(t, body["message"], "already revoked")
		code, body = d.do(t, "POST", "/v1/tokens/0123456789ab:revoke", d.token, map[string]any{"reason": "unknown"})
		require.Equal(t, http.StatusNotFound, code, "%v", body)

		code, body = d.do(t, "GET", "/v1/tokens", d.token, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Len(t, body["tokens"].([]any), 2, "a revoked token is listed only with include_inactive")
		code, body = d.do(t, "GET", "/v1/tokens?include_inactive=true", d.token, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Len(t, body["tokens"].([]any), 3)

		// The audit entry of the revocation names the token's organisation.
		testutil.Eventually(t, 20*time.Second, "REVOKE_TOKEN audited under acme-bank", func() error {
			code, body := d.do(t, "GET", "/v1/audit/entries?organization_id=acme-bank&type=REVOKE_TOKEN", d.token, nil)
			if code != http.StatusOK {
				return fmt.Errorf("status %d: %v", code, body)
			}
			if recs, _ := body["records"].([]any); len(recs) != 1 {
				return fmt.Errorf("%d records (a checkpoint is published every second)", len(recs))
			}
			return nil
		})
	})

	t.Run("CLI", func(t *testing.T) {
		stdout, stderr, code := d.cli(t, d.token, "-o", "json", "token", "create", "--role", "regulator", "--description", "EU supervisory authority", "--ttl", "7d")
		require.Equal(t, 0, code, stderr)
		var created struct {
			Token  struct{ ID string } `json:"token"`
			Secret string              `json:"secret"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &created), stdout)
		require.NotEmpty(t, created.Secret)

		stdout, stderr, code = d.cli(t, d.token, "token", "list", "--all")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, created.Token.ID)
		require.Regexp(t, govID+` +governance +acme-bank +revoked`, stdout)
		require.NotContains(t, stdout, created.Secret)

		stdout, stderr, code = d.cli(t, d.token, "token", "revoke", created.Token.ID, "--reason", "mandate ended")
		require.Equal(t, 0, code, stderr)
		require.Contains(t, stdout, "mandate ended")
	})
}

// The bootstrap admin token has the lifetime -bootstrap-token-ttl gives it
// (the registry refuses it from then on: registry's TestTokenAuthentication),
// and the dev banner says when it expires.
func TestBootstrapTokenExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d := startDev(t, "-bootstrap-token-ttl", "90m")
	code, body := d.do(t, "GET", "/v1/tokens", d.token, nil)
	require.Equal(t, http.StatusOK, code, "%v", body)
	toks := body["tokens"].([]any)
	require.Len(t, toks, 1, "%v", body)
	boot := toks[0].(map[string]any)
	require.Equal(t, "bootstrap admin token", boot["description"])
	created, err := time.Parse(time.RFC3339, boot["createTime"].(string))
	require.NoError(t, err)
	expire, err := time.Parse(time.RFC3339, fmt.Sprint(boot["expireTime"]))
	require.NoError(t, err, "the bootstrap token has an expiry: %v", boot)
	require.Equal(t, 90*time.Minute, expire.Sub(created))
	require.Contains(t, d.srv.Stdout.String(), "expires "+expire.UTC().Format(time.RFC3339), "the banner says when the token expires")
}
