package attestation

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestKeyPEMRoundTrip(t *testing.T) {
	pub, priv, err := GenerateKey(rand.Reader)
	require.NoError(t, err)

	privPEM, err := MarshalPrivateKeyPEM(priv)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----")))
	gotPriv, err := ParsePrivateKeyPEM(privPEM)
	require.NoError(t, err)
	require.True(t, priv.Equal(gotPriv))

	pubPEM, err := MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----")))
	gotPub, err := ParsePublicKeyPEM(pubPEM)
	require.NoError(t, err)
	require.True(t, pub.Equal(gotPub))
}

func TestGenerateKeyDeterministicFromReader(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	pub1, _, err := GenerateKey(bytes.NewReader(seed))
	require.NoError(t, err)
	pub2, _, err := GenerateKey(bytes.NewReader(seed))
	require.NoError(t, err)
	require.Equal(t, pub1, pub2)

	_, _, err = GenerateKey(bytes.NewReader(nil))
	require.Error(t, err)
	_, _, err = GenerateKey(nil)
	require.ErrorIs(t, err, ErrInvalidKey)
}

func TestParseKeyErrors(t *testing.T) {
	ca, err := NewCA("test", testNow, testDay)
	require.NoError(t, err)
	ecKeyPEM, err := ca.KeyPEM()
	require.NoError(t, err)

	tests := []struct {
		name    string
		data    []byte
		private bool
		wantErr error
	}{
		{"empty private", nil, true, ErrInvalidPEM},
		{"garbage private", []byte("not pem"), true, ErrInvalidPEM},
		{"wrong block private", ca.CertPEM, true, ErrInvalidPEM},
		{"ecdsa private", ecKeyPEM, true, ErrInvalidKey},
		{"bad der private", pemBlock("PRIVATE KEY", []byte{1, 2, 3}), true, ErrInvalidKey},
		{"empty public", nil, false, ErrInvalidPEM},
		{"wrong block public", ecKeyPEM, false, ErrInvalidPEM},
		{"bad der public", pemBlock("PUBLIC KEY", []byte{1, 2, 3}), false, ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.private {
				_, err = ParsePrivateKeyPEM(tt.data)
			} else {
				_, err = ParsePublicKeyPEM(tt.data)
			}
			require.ErrorIs(t, err, tt.wantErr)
		})
	}
}

func TestMarshalBadKeys(t *testing.T) {
	_, err := MarshalPrivateKeyPEM(ed25519.PrivateKey{1, 2})
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = MarshalPublicKeyPEM(ed25519.PublicKey{1, 2})
	require.ErrorIs(t, err, ErrInvalidKey)
	require.Empty(t, Fingerprint(nil))
}

func TestSaveLoadPrivateKey(t *testing.T) {
	_, priv, err := GenerateKey(rand.Reader)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "node.key")

	require.NoError(t, SavePrivateKey(path, priv))
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	got, err := LoadPrivateKey(path)
	require.NoError(t, err)
	require.True(t, priv.Equal(got))

	_, other, err := GenerateKey(rand.Reader)
	require.NoError(t, err)
	require.ErrorIs(t, SavePrivateKey(path, other), ErrFileExists)
	got, err = LoadPrivateKey(path)
	require.NoError(t, err)
	require.True(t, priv.Equal(got), "existing key must not be replaced")

	_, err = LoadPrivateKey(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestFingerprint(t *testing.T) {
	seed := bytes.Repeat([]byte{1}, ed25519.SeedSize)
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)

	fp := Fingerprint(pub)
	require.True(t, strings.HasPrefix(fp, "SHA256:"))
	require.Len(t, fp, len("SHA256:")+43)
	require.NotContains(t, fp, "=")
	require.Equal(t, fp, Fingerprint(pub), "stable")

	pem, err := MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	parsed, err := ParsePublicKeyPEM(pem)
	require.NoError(t, err)
	require.Equal(t, fp, Fingerprint(parsed), "stable across encodings")

	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	require.NotEqual(t, fp, Fingerprint(other))
}
