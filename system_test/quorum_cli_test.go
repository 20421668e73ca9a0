package system_test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestRevocationWithTwoAdminsNamesItsCascade revokes an organisation
// through the CLI on a federation that needs two admins: the proposal
// starts no cascade (and names none); the approval that applies the
// revocation prints the cascade's id, and the change record carries it.
func TestRevocationWithTwoAdminsNamesItsCascade(t *testing.T) {
	p := startPair(t, "city-gov", 3, "port-auth", 3, []string{"ping"})
	bob := testutil.NewAdmin("bob")
	p.d.admins.apply(t, bob.Enrol(), p.admin)
	two := uint32(2)
	p.d.admins.apply(t, testutil.Policy(&trustfedv1.FederationPolicyChange{AdminApprovalsRequired: &two}), p.admin)
	bobKey := filepath.Join(t.TempDir(), "bob.key")
	require.NoError(t, attestation.SavePrivateKey(bobKey, bob.Key))
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := p.d.cli(t, p.d.token, args...)
		require.Equal(t, 0, code, "trustfed %v\nstdout: %s\nstderr: %s", args, out, errOut)
		return out
	}

	out := run("org", "revoke", "port-auth", "--reason", "key compromised")
	require.Contains(t, out, "PENDING")
	require.NotContains(t, out, "Cascade", "a pending revocation has started no cascade")
	chg := regexp.MustCompile(`trustfed admin approve (chg-[0-9a-f]{16})`).FindStringSubmatch(out)
	require.Len(t, chg, 2, out)

	out = run("admin", "approve", chg[1], "--admin-key", bobKey)
	require.Contains(t, out, "APPLIED")
	m := regexp.MustCompile(`(?m)^Cascade (evt-[0-9a-f]{16}) notifies 1 partner`).FindStringSubmatch(out)
	require.Len(t, m, 2, "the approval that applies the revocation names its cascade:\n%s", out)
	require.Contains(t, run("revocation", "status", m[1], "--no-wait"), "REVOCATION of port-auth")

	var got struct {
		Change struct {
			CascadeIDs []string `json:"cascadeIds"`
		} `json:"change"`
	}
	out = run("admin", "changes", "get", chg[1], "-o", "json")
	require.NoError(t, json.Unmarshal([]byte(out), &got), out)
	require.Equal(t, []string{m[1]}, got.Change.CascadeIDs, "the change record names the cascade it started")
}
