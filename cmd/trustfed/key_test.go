package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestKeyCommandsAgainstRealServer: "key list" shows the dev node's
// endorsed key; "key endorse --from-node" asks the node for its key (an
// already endorsed key is refused by the registry); "key endorse --pubkey"
// endorses a second key; "key revoke --since now" marks it revoked; bad
// arguments are usage errors naming the flag.
func TestKeyCommandsAgainstRealServer(t *testing.T) {
	s := startRealServer(t)
	st, err := s.Client(t).Cluster().Status(t.Context(), &trustfedv1.StatusRequest{})
	require.NoError(t, err)

	out, _ := s.run(t, exitOK, "key", "list", "--node", "dev")
	require.Contains(t, out, st.NodeKeyId)

	_, stderr := s.run(t, exitError, "key", "endorse", "dev", "--from-node", s.GRPCAddr())
	require.Contains(t, stderr, "already endorsed")
	_, stderr = s.run(t, exitUsage, "key", "endorse", "other", "--from-node", s.GRPCAddr())
	require.Contains(t, stderr, `is "dev", not "other"`)
	_, stderr = s.run(t, exitUsage, "key", "endorse", "dev")
	require.Contains(t, stderr, "--pubkey")
	_, stderr = s.run(t, exitUsage, "key", "endorse", "dev", "--pubkey", "x", "--valid-for", "100000h")
	require.Contains(t, stderr, "--valid-for")

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	pemBytes, err := attestation.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	require.NoError(t, attestation.WriteFile(s.path("next.pub"), pemBytes, 0o644, false))
	out, _ = s.run(t, exitOK, "key", "endorse", "dev", "--pubkey", s.path("next.pub"), "--valid-for", "48h")
	require.Contains(t, out, attestation.Fingerprint(pub))

	_, stderr = s.run(t, exitUsage, "key", "revoke", "dev", attestation.Fingerprint(pub), "--since", "yesterday")
	require.Contains(t, stderr, "--since")
	s.run(t, exitOK, "key", "revoke", "dev", attestation.Fingerprint(pub), "--since", "now")
	out, _ = s.run(t, exitOK, "key", "list", "--node", "dev")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, attestation.Fingerprint(pub)) {
			require.NotEqual(t, "-", strings.Fields(line)[len(strings.Fields(line))-1], "revoked since is shown: %q", line)
		}
	}
}
