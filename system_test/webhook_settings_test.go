package system_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestWebhookSettingsAreSignedAndReplicated: a partner whose webhook is
// served under a private CA the server was never started with registers
// that CA and its endpoint through a change signed with its own key (the
// CLI's org set-webhook); the next cascade reaches it, without a restart.
// It then moves its endpoint, and the next cascade arrives there. Settings
// signed with another organisation's key, a private key instead of a
// certificate or a plain-http endpoint are refused, naming the field.
func TestWebhookSettingsAreSignedAndReplicated(t *testing.T) {
	rc := newReceivers(t) // its certificate is its own CA: not trusted by the server
	p := startPair(t, "city-gov", 3, "port-auth", 3, []string{"ping"})
	keys, err := p.admin.Keys(ctxT(t))
	require.NoError(t, err)
	rc.set(func(rc *receivers) { rc.keys = webhookKey(t, keys) })
	dir := t.TempDir()
	orgKey := filepath.Join(dir, "port-auth.key")
	require.NoError(t, attestation.SavePrivateKey(orgKey, p.fed.Key("port-auth")))
	caFile := rc.caFile(t)
	setWebhook := func(endpoint string) {
		t.Helper()
		out, errOut, code := p.d.cli(t, p.d.token, "org", "set-webhook", "port-auth", "--org-key", orgKey, "--endpoint", endpoint, "--ca-file", caFile)
		require.Equal(t, 0, code, "stdout: %s\nstderr: %s", out, errOut)
		require.Contains(t, out, endpoint)
		require.Contains(t, out, "1 certificate(s), trusted for its endpoints")
	}
	delivered := func(path, cascade string) {
		t.Helper()
		testutil.Eventually(t, 60*time.Second, "port-auth's webhook at /p/"+path+" gets "+cascade, func() error {
			var got, bad []string
			rc.set(func(rc *receivers) { got, bad = slices.Clone(rc.got[path]), slices.Clone(rc.bad) })
			if !slices.Contains(got, cascade) {
				return fmt.Errorf("delivered there: %v; refused: %v", got, bad)
			}
			return nil
		})
	}

	setWebhook(rc.endpoint("port-auth"))
	rec := p.d.admins.apply(t, testutil.SetLevel("city-gov", 2), p.admin)
	require.Len(t, rec.CascadeIds, 1)
	delivered("port-auth", rec.CascadeIds[0])

	setWebhook(rc.endpoint("port-auth-moved"))
	rec = p.d.admins.apply(t, testutil.SetStatus("city-gov", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED), p.admin)
	require.Len(t, rec.CascadeIds, 1)
	delivered("port-auth-moved", rec.CascadeIds[0])

	t.Run("refused", func(t *testing.T) {
		caPEM, err := os.ReadFile(caFile)
		require.NoError(t, err)
		before, err := p.admin.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "port-auth"})
		require.NoError(t, err)
		for _, tc := range []struct {
			name, signer, endpoint, ca, field string
		}{
			{"signed by another organisation", "city-gov", rc.endpoint("evil"), string(caPEM), "signature"},
			{"a private key", "port-auth", rc.endpoint("port-auth"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "settings.ca_certificates_pem[0]"},
			{"plain http", "port-auth", "http://127.0.0.1:1/p/port-auth", "", "settings.endpoints[0]"},
		} {
			req, err := client.NewWebhookSettings(p.fed.Key(tc.signer), "port-auth", []string{tc.endpoint}, tc.ca, time.Now())
			require.NoError(t, err)
			_, err = p.admin.Membership().SetWebhook(ctxT(t), req)
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", tc.name, err)
			require.Contains(t, status.Convert(err).Message(), tc.field+":", tc.name)

			body, err := protojson.Marshal(req) // the same over REST
			require.NoError(t, err)
			code, answer := p.d.do(t, "POST", "/v1/organizations/port-auth/webhook", p.d.token, json.RawMessage(body))
			require.Equal(t, http.StatusBadRequest, code, "%s: %v", tc.name, answer)
			require.Contains(t, answer["message"], tc.field+":", tc.name)
		}
		after, err := p.admin.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "port-auth"})
		require.NoError(t, err)
		require.Equal(t, before.Organization.ModifyIndex, after.Organization.ModifyIndex, "nothing written")
		require.Equal(t, []string{rc.endpoint("port-auth-moved")}, after.Organization.NotificationEndpoints)
	})
}
