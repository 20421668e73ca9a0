package attestation

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const testDay = 24 * time.Hour

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestNewCA(t *testing.T) {
	ca, err := NewCA("trustfed test CA", testNow, 30*testDay)
	require.NoError(t, err)
	require.True(t, ca.Cert.IsCA)
	require.Equal(t, "trustfed test CA", ca.Cert.Subject.CommonName)
	require.Equal(t, testNow.Add(30*testDay), ca.Cert.NotAfter.UTC())
	require.True(t, ca.Cert.NotBefore.Before(testNow))
	pub, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok)
	require.Equal(t, elliptic.P256(), pub.Curve)

	keyPEM, err := ca.KeyPEM()
	require.NoError(t, err)
	again, err := ParseCA(ca.CertPEM, keyPEM)
	require.NoError(t, err)
	require.True(t, again.Cert.Equal(ca.Cert))

	_, err = NewCA("", testNow, testDay)
	require.Error(t, err)
	_, err = NewCA("x", testNow, 0)
	require.Error(t, err)
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca", testNow, testDay)
	require.NoError(t, err)
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	require.NoError(t, ca.Save(certPath, keyPath, false))
	info, err := os.Stat(keyPath)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	require.ErrorIs(t, ca.Save(certPath, keyPath, false), ErrFileExists)

	loaded, err := LoadCA(certPath, keyPath)
	require.NoError(t, err)
	require.True(t, loaded.Cert.Equal(ca.Cert))
	require.Equal(t, ca.CertPEM, loaded.CertPEM)

	// SEC1 keys are accepted too.
	sec1, err := x509.MarshalECPrivateKey(ca.Key.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	_, err = ParseCA(ca.CertPEM, pemBlock("EC PRIVATE KEY", sec1))
	require.NoError(t, err)

	other, err := NewCA("other", testNow, testDay)
	require.NoError(t, err)
	otherKey, err := other.KeyPEM()
	require.NoError(t, err)
	_, err = ParseCA(ca.CertPEM, otherKey)
	require.ErrorIs(t, err, ErrInvalidKey, "mismatched key")

	nodeCert, nodeKey, err := ca.IssueNode("n1", []string{"localhost"}, testNow, testDay)
	require.NoError(t, err)
	_, err = ParseCA(nodeCert, nodeKey)
	require.ErrorIs(t, err, ErrInvalidCertificate, "leaf is not a CA")

	_, err = LoadCA(filepath.Join(dir, "missing.pem"), keyPath)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestIssueNodeVerifies(t *testing.T) {
	ca, err := NewCA("ca", testNow, 365*testDay)
	require.NoError(t, err)
	certPEM, keyPEM, err := ca.IssueNode("node-1", []string{"127.0.0.1", "Node1.Example.com", "::1", "127.0.0.1"}, testNow, 30*testDay)
	require.NoError(t, err)

	cert, err := ParseCertificatePEM(certPEM)
	require.NoError(t, err)
	require.Equal(t, "node-1", cert.Subject.CommonName)
	require.Equal(t, []string{"node1.example.com"}, cert.DNSNames)
	require.Len(t, cert.IPAddresses, 2)
	require.Equal(t, []*url.URL{{Scheme: "spiffe", Host: "trustfed", Path: "/node/node-1"}}, cert.URIs)
	require.ElementsMatch(t, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
	require.False(t, cert.IsCA)
	_, ok := cert.PublicKey.(*ecdsa.PublicKey)
	require.True(t, ok)

	id, ok := NodeIDFromCert(cert)
	require.True(t, ok)
	require.Equal(t, "node-1", id)

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{usage}})
		require.NoError(t, err, "usage %v", usage)
	}
	for _, host := range []string{"127.0.0.1", "node1.example.com", "::1"} {
		require.NoError(t, cert.VerifyHostname(host), host)
	}
	require.Error(t, cert.VerifyHostname("other.example.com"))

	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow.Add(31 * testDay)})
	require.Error(t, err, "expired")

	other, err := NewCA("other", testNow, testDay)
	require.NoError(t, err)
	otherPool := x509.NewCertPool()
	otherPool.AddCert(other.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: otherPool, CurrentTime: testNow})
	require.Error(t, err, "foreign CA")

	key, err := parseSignerPEM(keyPEM)
	require.NoError(t, err)
	require.True(t, key.Public().(*ecdsa.PublicKey).Equal(cert.PublicKey))
}

func TestIssueNodeCappedAtCAExpiry(t *testing.T) {
	ca, err := NewCA("ca", testNow, testDay)
	require.NoError(t, err)
	certPEM, _, err := ca.IssueNode("n", []string{"localhost"}, testNow, 10*testDay)
	require.NoError(t, err)
	cert, err := ParseCertificatePEM(certPEM)
	require.NoError(t, err)
	require.Equal(t, ca.Cert.NotAfter, cert.NotAfter)

	_, _, err = ca.IssueNode("n", []string{"localhost"}, testNow.Add(2*testDay), testDay)
	require.ErrorIs(t, err, ErrInvalidCertificate)
}

func TestIssueNodeValidation(t *testing.T) {
	ca, err := NewCA("ca", testNow, testDay)
	require.NoError(t, err)
	tests := []struct {
		name     string
		nodeID   string
		hosts    []string
		validity time.Duration
		wantErr  error
	}{
		{"empty id", "", []string{"localhost"}, testDay, ErrInvalidNodeID},
		{"uppercase id", "Node1", []string{"localhost"}, testDay, ErrInvalidNodeID},
		{"leading hyphen", "-n1", []string{"localhost"}, testDay, ErrInvalidNodeID},
		{"slash in id", "n/1", []string{"localhost"}, testDay, ErrInvalidNodeID},
		{"id too long", strings.Repeat("a", 64), []string{"localhost"}, testDay, ErrInvalidNodeID},
		{"no hosts", "n1", nil, testDay, ErrInvalidHost},
		{"empty host", "n1", []string{""}, testDay, ErrInvalidHost},
		{"host with port", "n1", []string{"localhost:7443"}, testDay, ErrInvalidHost},
		{"bracketed ip", "n1", []string{"[::1]"}, testDay, ErrInvalidHost},
		{"wildcard", "n1", []string{"*.example.com"}, testDay, ErrInvalidHost},
		{"trailing dot", "n1", []string{"example.com."}, testDay, ErrInvalidHost},
		{"label hyphen", "n1", []string{"-a.example.com"}, testDay, ErrInvalidHost},
		{"underscore", "n1", []string{"a_b.example.com"}, testDay, ErrInvalidHost},
		{"zero validity", "n1", []string{"localhost"}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ca.IssueNode(tt.nodeID, tt.hosts, testNow, tt.validity)
			require.Error(t, err)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			}
		})
	}
	var nilCA *CA
	_, _, err = nilCA.IssueNode("n1", []string{"localhost"}, testNow, testDay)
	require.Error(t, err)
}

func TestNodeIDFromCert(t *testing.T) {
	mk := func(raw ...string) *x509.Certificate {
		c := &x509.Certificate{}
		for _, r := range raw {
			u, err := url.Parse(r)
			require.NoError(t, err)
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	tests := []struct {
		name   string
		cert   *x509.Certificate
		wantID string
		wantOK bool
	}{
		{"nil", nil, "", false},
		{"no uris", mk(), "", false},
		{"node", mk("spiffe://trustfed/node/n1"), "n1", true},
		{"second uri", mk("https://example.com", "spiffe://trustfed/node/n2"), "n2", true},
		{"other trust domain", mk("spiffe://other/node/n1"), "", false},
		{"not a node", mk("spiffe://trustfed/org/acme"), "", false},
		{"nested path", mk("spiffe://trustfed/node/n1/x"), "", false},
		{"query", mk("spiffe://trustfed/node/n1?x=1"), "", false},
		{"bad id", mk("spiffe://trustfed/node/N1"), "", false},
		{"empty id", mk("spiffe://trustfed/node/"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := NodeIDFromCert(tt.cert)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.wantID, id)
		})
	}
}
