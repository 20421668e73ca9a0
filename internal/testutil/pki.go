package testutil

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
)

// ClusterPKI is a throwaway cluster CA in a test directory.
type ClusterPKI struct {
	Dir    string
	CA     *attestation.CA
	CAFile string
}

// NewClusterPKI creates a CA under dir.
func NewClusterPKI(t testing.TB, dir string) *ClusterPKI {
	t.Helper()
	ca, err := attestation.NewCA("trustfed test CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatalf("new CA: %v", err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatalf("CA key: %v", err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	if err := attestation.WritePEMFiles(caFile, filepath.Join(dir, "ca-key.pem"), ca.CertPEM, keyPEM, true); err != nil {
		t.Fatalf("write CA: %v", err)
	}
	return &ClusterPKI{Dir: dir, CA: ca, CAFile: caFile}
}

// NodeFiles issues a loopback certificate for nodeID and returns the
// -tls-* flags for it.
func (p *ClusterPKI) NodeFiles(t testing.TB, nodeID string) []string {
	t.Helper()
	certPEM, keyPEM, err := p.CA.IssueNode(nodeID, []string{"127.0.0.1", "localhost"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatalf("issue node cert: %v", err)
	}
	cert, key := filepath.Join(p.Dir, nodeID+".pem"), filepath.Join(p.Dir, nodeID+"-key.pem")
	if err := attestation.WritePEMFiles(cert, key, certPEM, keyPEM, true); err != nil {
		t.Fatalf("write node cert: %v", err)
	}
	return []string{"-tls-ca", p.CAFile, "-tls-cert", cert, "-tls-key", key}
}

// Certificates for the mTLS rejection matrix: each returns a tls.Certificate
// signed by p's CA (or, for OtherCA, by a CA of its own).

// NodeCert is a valid server node certificate for nodeID (loopback SANs).
func (p *ClusterPKI) NodeCert(t testing.TB, nodeID string) tls.Certificate {
	t.Helper()
	return p.nodeCertAt(t, nodeID, time.Now(), 24*time.Hour)
}

// ExpiredNodeCert is a node certificate of the right CA whose validity
// ended an hour ago.
func (p *ClusterPKI) ExpiredNodeCert(t testing.TB, nodeID string) tls.Certificate {
	t.Helper()
	return p.nodeCertAt(t, nodeID, time.Now().Add(-3*time.Hour), 2*time.Hour)
}

// NotYetValidNodeCert is a node certificate of the right CA whose validity
// starts in about an hour.
func (p *ClusterPKI) NotYetValidNodeCert(t testing.TB, nodeID string) tls.Certificate {
	t.Helper()
	return p.nodeCertAt(t, nodeID, time.Now().Add(time.Hour), time.Hour)
}

func (p *ClusterPKI) nodeCertAt(t testing.TB, nodeID string, now time.Time, validity time.Duration) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := p.CA.IssueNode(nodeID, []string{"127.0.0.1", "localhost"}, now, validity)
	if err != nil {
		t.Fatalf("issue node cert: %v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("node key pair: %v", err)
	}
	return cert
}

// OtherCANodeCert is a node certificate for nodeID from a CA of its own
// (same common name as the cluster CA, different key).
func OtherCANodeCert(t testing.TB, nodeID string) tls.Certificate {
	t.Helper()
	ca, err := attestation.NewCA("trustfed test CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatalf("new CA: %v", err)
	}
	return (&ClusterPKI{CA: ca}).NodeCert(t, nodeID)
}

// MemberCert is a member node's client certificate of the right CA
// (spiffe://trustfed/org/<org>/member/<node>, client authentication only),
// with a fresh ed25519 key.
func (p *ClusterPKI) MemberCert(t testing.TB, org, node string) tls.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("member key: %v", err)
	}
	certPEM, _, _, err := p.CA.IssueMember(org, node, pub, time.Now(), time.Hour)
	if err != nil {
		t.Fatalf("issue member cert: %v", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("issue member cert: no PEM block")
	}
	return tls.Certificate{Certificate: [][]byte{block.Bytes}, PrivateKey: priv}
}

// AnonymousCert is a certificate of the right CA that names no trustfed
// identity (no SPIFFE URI), usable as client and server certificate.
func (p *ClusterPKI) AnonymousCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "no-identity"},
		NotBefore:    time.Now().Add(-5 * time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA.Cert, key.Public(), p.CA.Key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ProbeTLS is a client configuration that trusts p's CA and always presents
// cert (nil: none), whatever CAs the server names in its request — Go's
// client would otherwise keep a certificate of an unnamed CA to itself.
func (p *ClusterPKI) ProbeTLS(t testing.TB, cert *tls.Certificate) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.CA.Cert)
	return &tls.Config{
		RootCAs:    pool,
		ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil
			}
			return cert, nil
		},
	}
}
