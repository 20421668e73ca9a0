package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
)

// keygenT runs "keygen --out path" and returns the key's fingerprint.
func keygenT(t *testing.T, path string) string {
	t.Helper()
	code, stdout, stderr := runCLI(nil, "-o", "json", "keygen", "--out", path)
	require.Equal(t, exitOK, code, stderr)
	var got keyFiles
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	return got.Fingerprint
}

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "acme.key")
	code, stdout, stderr := runCLI(nil, "keygen", "--out", out)
	require.Equal(t, exitOK, code, stderr)

	priv, err := attestation.LoadPrivateKey(out)
	require.NoError(t, err)
	pubPEM, err := os.ReadFile(out + ".pub")
	require.NoError(t, err)
	pub, err := attestation.ParsePublicKeyPEM(pubPEM)
	require.NoError(t, err)
	require.True(t, pub.Equal(priv.Public()))
	require.Contains(t, stdout, "Fingerprint:  "+attestation.Fingerprint(pub)+"\n")
	require.Contains(t, stdout, "Public key:   "+out+".pub\n")
	info, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	// Never replaced by accident, neither file.
	code, _, stderr = runCLI(nil, "keygen", "--out", out)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "already exists")
	again, err := attestation.LoadPrivateKey(out)
	require.NoError(t, err)
	require.True(t, again.Equal(priv))

	lone := filepath.Join(dir, "lone.key")
	require.NoError(t, os.WriteFile(lone+".pub", []byte("x"), 0o644))
	code, _, _ = runCLI(nil, "keygen", "--out", lone)
	require.Equal(t, exitError, code)
	_, err = os.Stat(lone)
	require.ErrorIs(t, err, os.ErrNotExist, "no private key written when the public file exists")

	// --force replaces both.
	fp := keygenT(t, filepath.Join(dir, "other.key"))
	code, _, stderr = runCLI(nil, "keygen", "--out", out, "--force")
	require.Equal(t, exitOK, code, stderr)
	replaced, err := attestation.LoadPrivateKey(out)
	require.NoError(t, err)
	require.False(t, replaced.Equal(priv))
	info, err = os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	require.NotEqual(t, fp, attestation.Fingerprint(pub))

	code, _, stderr = runCLI(nil, "keygen")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `"out" not set`)
	code, _, _ = runCLI(nil, "keygen", "--out", out, "extra")
	require.Equal(t, exitUsage, code)
}
