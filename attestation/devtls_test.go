package attestation

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func readFiles(t *testing.T, files TLSFiles) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{files.CAFile, files.CAKeyFile, files.CertFile, files.KeyFile} {
		if p == "" {
			continue
		}
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		out[filepath.Base(p)] = data
	}
	return out
}

func loadLeafNodeID(t *testing.T, files TLSFiles) string {
	t.Helper()
	data, err := os.ReadFile(files.CertFile)
	require.NoError(t, err)
	cert, err := ParseCertificatePEM(data)
	require.NoError(t, err)
	id, ok := NodeIDFromCert(cert)
	require.True(t, ok)
	return id
}

func TestEnsureDevTLSCreatesAndReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	files, err := EnsureDevTLS(dir, "n1", nil, testNow)
	require.NoError(t, err)
	require.Equal(t, TLSFiles{
		CAFile:    filepath.Join(dir, "ca.pem"),
		CAKeyFile: filepath.Join(dir, "ca-key.pem"),
		CertFile:  filepath.Join(dir, "node.pem"),
		KeyFile:   filepath.Join(dir, "node-key.pem"),
	}, files)
	for path, mode := range map[string]os.FileMode{
		dir: 0o700, files.CAKeyFile: 0o600, files.KeyFile: 0o600, files.CAFile: 0o644, files.CertFile: 0o644,
	} {
		info, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, mode, info.Mode().Perm(), path)
	}
	before := readFiles(t, files)

	again, err := EnsureDevTLS(dir, "n1", []string{"127.0.0.1", "localhost"}, testNow.Add(testDay))
	require.NoError(t, err)
	require.Equal(t, files, again)
	require.Equal(t, before, readFiles(t, again), "reused unchanged")
}

func TestEnsureDevTLSReissuesNodeCert(t *testing.T) {
	tests := []struct {
		name   string
		nodeID string
		hosts  []string
		later  bool
	}{
		{"other node id", "n2", nil, false},
		{"new host", "n1", []string{"localhost", "10.0.0.7"}, false},
		{"near expiry", "n1", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files, err := EnsureDevTLS(dir, "n1", nil, testNow)
			require.NoError(t, err)
			before := readFiles(t, files)

			now := testNow
			if tt.later {
				now = testNow.Add(devNodeValidity - testDay/2)
			}
			again, err := EnsureDevTLS(dir, tt.nodeID, tt.hosts, now)
			require.NoError(t, err)
			after := readFiles(t, again)
			require.Equal(t, before["ca.pem"], after["ca.pem"], "CA kept")
			require.NotEqual(t, before["node.pem"], after["node.pem"], "node cert re-issued")
			require.Equal(t, tt.nodeID, loadLeafNodeID(t, again))
		})
	}
}

func TestEnsureDevTLSWithoutCAKey(t *testing.T) {
	dir := t.TempDir()
	files, err := EnsureDevTLS(dir, "n1", nil, testNow)
	require.NoError(t, err)
	require.NoError(t, os.Remove(files.CAKeyFile))

	again, err := EnsureDevTLS(dir, "n1", nil, testNow)
	require.NoError(t, err)
	require.Empty(t, again.CAKeyFile)

	_, err = EnsureDevTLS(dir, "n2", nil, testNow)
	require.Error(t, err, "cannot re-issue without the CA key")

	require.NoError(t, os.Remove(files.CAFile))
	require.NoError(t, os.WriteFile(files.CAKeyFile, []byte("x"), 0o600))
	_, err = EnsureDevTLS(dir, "n1", nil, testNow)
	require.Error(t, err, "CA key without CA certificate")
}

func TestEnsureDevTLSValidation(t *testing.T) {
	_, err := EnsureDevTLS(t.TempDir(), "Bad", nil, testNow)
	require.ErrorIs(t, err, ErrInvalidNodeID)
	_, err = EnsureDevTLS(t.TempDir(), "n1", []string{"bad host"}, testNow)
	require.ErrorIs(t, err, ErrInvalidHost)
	_, err = EnsureDevTLS("", "n1", nil, testNow)
	require.Error(t, err)
}
