package server_test

import (
	"bytes"
	"crypto/ed25519"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestDevServerEndorsesItsOwnNodeKey: the dev server generates its signing
// key into its data directory (0600), publishes it in Status, has it
// endorsed at bootstrap (as the first leader of a fresh cluster), and GET
// /v1/keys lists it with its node and validity — and no cluster-wide
// registry key: none was ever created.
func TestDevServerEndorsesItsOwnNodeKey(t *testing.T) {
	d := testserver.StartDev(t)
	path := filepath.Join(d.DataDir(), attestation.NodeKeyFile)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	priv, err := attestation.LoadPrivateKey(path)
	require.NoError(t, err)
	pub := priv.Public().(ed25519.PublicKey)

	c := d.Client(t)
	st, err := c.Cluster().Status(t.Context(), &trustfedv1.StatusRequest{})
	require.NoError(t, err)
	require.Equal(t, attestation.Fingerprint(pub), st.NodeKeyId)
	require.True(t, pub.Equal(ed25519.PublicKey(st.NodePublicKey)))
	require.True(t, st.NodeKeyEndorsed, "the dev admin endorses the dev node's key before the server reports ready")

	keys, err := c.Keys(t.Context())
	require.NoError(t, err)
	node, ok := keys[st.NodeKeyId]
	require.True(t, ok, "GET /v1/keys lists the node key")
	require.Equal(t, "dev", node.NodeId)
	require.NotNil(t, node.ValidFrom)
	require.NotNil(t, node.ValidUntil)
	require.Nil(t, node.RevokeTime)
	for _, k := range keys {
		require.NotEmpty(t, k.NodeId, "a fresh server never had a cluster-wide registry key: %s", k.KeyId)
	}
}

// TestNoPrivateNodeKeyOutsideItsFile: after a snapshot, no file of the data
// directory but the node's own key file (Raft log, snapshots, audit log,
// addresses, tokens) holds the node's private key, seed or expanded.
func TestNoPrivateNodeKeyOutsideItsFile(t *testing.T) {
	d := testserver.StartDev(t)
	require.NoError(t, d.TakeSnapshot(t.Context()))
	priv, err := attestation.LoadPrivateKey(filepath.Join(d.DataDir(), attestation.NodeKeyFile))
	require.NoError(t, err)
	keyPEM, err := attestation.MarshalPrivateKeyPEM(priv)
	require.NoError(t, err)
	var scanned int
	var seen []string
	err = filepath.WalkDir(d.DataDir(), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() == attestation.NodeKeyFile {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		scanned++
		seen = append(seen, p)
		for what, secret := range map[string][]byte{"seed": priv.Seed(), "expanded key": priv, "PEM": keyPEM} {
			require.False(t, bytes.Contains(b, secret), "%s holds the node's private key (%s)", p, what)
		}
		return nil
	})
	require.NoError(t, err)
	require.Greater(t, scanned, 3)
	for _, want := range []string{"raft.db", "state.bin", "audit"} {
		require.True(t, slices.ContainsFunc(seen, func(p string) bool { return strings.Contains(p, want) }), "the scan read no %s file: %v", want, seen)
	}
}
