package testutil

import (
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
