package attestation

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMemberSPIFFEID(t *testing.T) {
	require.Equal(t, "spiffe://trustfed/org/acme-bank/member/gw-1", MemberSPIFFEID("acme-bank", "gw-1"))
	u, err := url.Parse(MemberSPIFFEID("acme-bank", "gw-1"))
	require.NoError(t, err)
	org, node, ok := memberFromURI(u)
	require.True(t, ok)
	require.Equal(t, "acme-bank", org)
	require.Equal(t, "gw-1", node)
}

func TestMemberFromCert(t *testing.T) {
	mk := func(eku []x509.ExtKeyUsage, raw ...string) *x509.Certificate {
		c := &x509.Certificate{ExtKeyUsage: eku}
		for _, r := range raw {
			u, err := url.Parse(r)
			require.NoError(t, err)
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name      string
		cert      *x509.Certificate
		org, node string
		ok        bool
	}{
		{"nil", nil, "", "", false},
		{"no uris", mk(client), "", "", false},
		{"member", mk(client, "spiffe://trustfed/org/acme/member/gw-1"), "acme", "gw-1", true},
		{"member beside another uri", mk(client, "https://acme.example", "spiffe://trustfed/org/acme/member/gw-1"), "acme", "gw-1", true},
		{"two members", mk(client, "spiffe://trustfed/org/acme/member/a", "spiffe://trustfed/org/beta/member/b"), "", "", false},
		{"server node", mk(both, "spiffe://trustfed/node/n1"), "", "", false},
		{"member and node", mk(client, "spiffe://trustfed/org/acme/member/gw-1", "spiffe://trustfed/node/n1"), "", "", false},
		{"member with server usage", mk(both, "spiffe://trustfed/org/acme/member/gw-1"), "", "", false},
		{"member with any usage", mk([]x509.ExtKeyUsage{x509.ExtKeyUsageAny}, "spiffe://trustfed/org/acme/member/gw-1"), "", "", false},
		{"other trust domain", mk(client, "spiffe://other/org/acme/member/gw-1"), "", "", false},
		{"not spiffe", mk(client, "https://trustfed/org/acme/member/gw-1"), "", "", false},
		{"org only", mk(client, "spiffe://trustfed/org/acme"), "", "", false},
		{"no node", mk(client, "spiffe://trustfed/org/acme/member/"), "", "", false},
		{"nested node", mk(client, "spiffe://trustfed/org/acme/member/gw-1/x"), "", "", false},
		{"bad org", mk(client, "spiffe://trustfed/org/Acme/member/gw-1"), "", "", false},
		{"short org", mk(client, "spiffe://trustfed/org/a/member/gw-1"), "", "", false},
		{"bad node", mk(client, "spiffe://trustfed/org/acme/member/GW"), "", "", false},
		{"query", mk(client, "spiffe://trustfed/org/acme/member/gw-1?x=1"), "", "", false},
		{"fragment", mk(client, "spiffe://trustfed/org/acme/member/gw-1#x"), "", "", false},
		{"user", mk(client, "spiffe://u@trustfed/org/acme/member/gw-1"), "", "", false},
		{"escaped slash", mk(client, "spiffe://trustfed/org/acme%2Fmember/member/gw-1"), "", "", false},
		{"wrong infix", mk(client, "spiffe://trustfed/org/acme/node/gw-1"), "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			org, node, ok := MemberFromCert(tt.cert)
			require.Equal(t, tt.ok, ok)
			require.Equal(t, tt.org, org)
			require.Equal(t, tt.node, node)
		})
	}
}

// A member certificate is never taken for a server node's, and the reverse.
func TestMemberAndNodeCertificatesAreNotConfused(t *testing.T) {
	ca, err := NewCA("ca", testNow, 30*testDay)
	require.NoError(t, err)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	memberPEM, _, _, err := ca.IssueMember("acme", "n1", pub, testNow, testDay)
	require.NoError(t, err)
	member, err := ParseCertificatePEM(memberPEM)
	require.NoError(t, err)
	_, ok := NodeIDFromCert(member)
	require.False(t, ok, "a member certificate is not a server node's")

	nodePEM, _, err := ca.IssueNode("n1", []string{"localhost"}, testNow, testDay)
	require.NoError(t, err)
	node, err := ParseCertificatePEM(nodePEM)
	require.NoError(t, err)
	_, _, ok = MemberFromCert(node)
	require.False(t, ok, "a server node certificate is not a member's")

	// A (hypothetical) certificate naming both is neither.
	both := &x509.Certificate{URIs: append(append([]*url.URL{}, member.URIs...), node.URIs...), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	_, ok = NodeIDFromCert(both)
	require.False(t, ok)
	_, _, ok = MemberFromCert(both)
	require.False(t, ok)
}

func TestIssueMember(t *testing.T) {
	ca, err := NewCA("ca", testNow, 30*testDay)
	require.NoError(t, err)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	certPEM, serial, notAfter, err := ca.IssueMember("acme-bank", "gw-1", pub, testNow, testDay)
	require.NoError(t, err)
	cert, err := ParseCertificatePEM(certPEM)
	require.NoError(t, err)
	require.Equal(t, serial, cert.SerialNumber.Text(16))
	require.Equal(t, notAfter, cert.NotAfter)
	require.Equal(t, testNow.Add(testDay), cert.NotAfter.UTC())
	require.Equal(t, testNow.Add(-clockSkew), cert.NotBefore.UTC())
	require.Equal(t, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, cert.ExtKeyUsage)
	require.False(t, cert.IsCA)
	require.Empty(t, cert.DNSNames)
	require.Empty(t, cert.IPAddresses)
	require.Len(t, cert.URIs, 1)
	require.True(t, pub.Equal(cert.PublicKey), "the certificate carries the enrolled key")
	org, node, ok := MemberFromCert(cert)
	require.True(t, ok)
	require.Equal(t, "acme-bank", org)
	require.Equal(t, "gw-1", node)

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: testNow, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	require.Error(t, err, "a member certificate cannot serve TLS")

	// Capped at the CA's expiry.
	_, _, notAfter, err = ca.IssueMember("acme-bank", "gw-1", pub, testNow, 365*testDay)
	require.NoError(t, err)
	require.Equal(t, ca.Cert.NotAfter, notAfter)

	// Distinct serials.
	_, serial2, _, err := ca.IssueMember("acme-bank", "gw-1", pub, testNow, testDay)
	require.NoError(t, err)
	require.NotEqual(t, serial, serial2)

	for name, tc := range map[string]struct {
		ca        *CA
		org, node string
		pub       ed25519.PublicKey
		now       time.Time
		validity  time.Duration
	}{
		"nil ca":      {nil, "acme", "n1", pub, testNow, testDay},
		"bad org":     {ca, "Acme", "n1", pub, testNow, testDay},
		"bad node":    {ca, "acme", "-n1", pub, testNow, testDay},
		"short key":   {ca, "acme", "n1", pub[:31], testNow, testDay},
		"no validity": {ca, "acme", "n1", pub, testNow, 0},
		"ca expired":  {ca, "acme", "n1", pub, testNow.Add(31 * testDay), testDay},
	} {
		_, _, _, err := tc.ca.IssueMember(tc.org, tc.node, tc.pub, tc.now, tc.validity)
		require.Error(t, err, name)
	}
}

// A member certificate works as a TLS 1.3 client certificate with the
// node's ed25519 key, against a server that verifies client certificates
// with the CA, and the server reads the member's identity from it.
func TestMemberCertificateHandshake(t *testing.T) {
	now := time.Now()
	serverFiles, err := EnsureDevTLS(t.TempDir(), "server", []string{"127.0.0.1"}, now)
	require.NoError(t, err)
	serverCfg, err := ServerTLSConfig(serverFiles)
	require.NoError(t, err)
	ca, err := LoadCA(serverFiles.CAFile, serverFiles.CAKeyFile)
	require.NoError(t, err)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	certPEM, _, _, err := ca.IssueMember("acme", "gw-1", pub, now, time.Hour)
	require.NoError(t, err)
	cert, err := ParseCertificatePEM(certPEM)
	require.NoError(t, err)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverCfg)
	require.NoError(t, err)
	defer ln.Close()
	seen := make(chan *x509.Certificate, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			seen <- nil
			return
		}
		defer conn.Close()
		tc := conn.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if tc.Handshake() != nil || len(tc.ConnectionState().VerifiedChains) == 0 {
			seen <- nil
			return
		}
		seen <- tc.ConnectionState().VerifiedChains[0][0]
		_, _ = tc.Write([]byte("ok"))
	}()
	clientCfg, err := ClientTLSConfig(serverFiles.CAFile, "", "")
	require.NoError(t, err)
	clientCfg.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: priv, Leaf: cert}}
	require.NoError(t, dial(ln.Addr().(*net.TCPAddr).String(), clientCfg))
	leaf := <-seen
	require.NotNil(t, leaf)
	org, node, ok := MemberFromCert(leaf)
	require.True(t, ok)
	require.Equal(t, "acme", org)
	require.Equal(t, "gw-1", node)
}
