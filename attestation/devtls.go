package attestation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// TLSFiles names the PEM files of a node's TLS material.
type TLSFiles struct {
	// CAFile is the CA certificate clients and peers are verified against.
	CAFile string
	// CAKeyFile is the CA private key; "" when the CA key is kept elsewhere.
	CAKeyFile string
	// CertFile is the node certificate.
	CertFile string
	// KeyFile is the node private key.
	KeyFile string
}

// Names and lifetimes of the material EnsureDevTLS creates.
const (
	DevCAFileName     = "ca.pem"
	DevCAKeyFileName  = "ca-key.pem"
	DevCertFileName   = "node.pem"
	DevKeyFileName    = "node-key.pem"
	devCACommonName   = "trustfed dev CA"
	devCAValidity     = 10 * 365 * 24 * time.Hour
	devNodeValidity   = 365 * 24 * time.Hour
	devRenewBeforeEnd = 24 * time.Hour
)

// DefaultDevHosts are the hosts a dev node certificate covers when none are given.
var DefaultDevHosts = []string{"localhost", "127.0.0.1", "::1"}

// EnsureDevTLS makes sure dir holds a CA (ca.pem, ca-key.pem) and a node
// certificate (node.pem, node-key.pem) for nodeID covering hosts
// (DefaultDevHosts if empty), creating what is missing. Keys are written
// with mode 0600, dir with 0700.
//
// Existing files are reused. The node certificate is re-issued from the CA
// only when it no longer fits: it does not chain to ca.pem at now, expires
// within a day, names another node, misses one of hosts, or does not match
// its key. A ca.pem without ca-key.pem is accepted as long as the node
// certificate fits (the returned CAKeyFile is then "").
func EnsureDevTLS(dir, nodeID string, hosts []string, now time.Time) (TLSFiles, error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: %w", err)
	}
	if len(hosts) == 0 {
		hosts = DefaultDevHosts
	}
	if _, _, err := splitHosts(hosts); err != nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: %w", err)
	}
	if dir == "" {
		return TLSFiles{}, errors.New("ensure dev tls: directory is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: %w", err)
	}
	files := TLSFiles{
		CAFile:    filepath.Join(dir, DevCAFileName),
		CAKeyFile: filepath.Join(dir, DevCAKeyFileName),
		CertFile:  filepath.Join(dir, DevCertFileName),
		KeyFile:   filepath.Join(dir, DevKeyFileName),
	}
	ca, err := ensureDevCA(files, now)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: %w", err)
	}
	fitErr := nodeCertFits(files, nodeID, hosts, now)
	if fitErr == nil {
		if ca == nil {
			files.CAKeyFile = ""
		}
		return files, nil
	}
	if ca == nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: node certificate unusable and %s is missing: %w", files.CAKeyFile, fitErr)
	}
	certPEM, keyPEM, err := ca.IssueNode(nodeID, hosts, now, devNodeValidity)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: %w", err)
	}
	if err := WritePEMFiles(files.CertFile, files.KeyFile, certPEM, keyPEM, true); err != nil {
		return TLSFiles{}, fmt.Errorf("ensure dev tls: %w", err)
	}
	return files, nil
}

// ensureDevCA loads or creates the CA. It returns a nil CA (and no error)
// when only the certificate is present.
func ensureDevCA(files TLSFiles, now time.Time) (*CA, error) {
	certOK, err := fileExists(files.CAFile)
	if err != nil {
		return nil, err
	}
	keyOK, err := fileExists(files.CAKeyFile)
	if err != nil {
		return nil, err
	}
	switch {
	case certOK && keyOK:
		return LoadCA(files.CAFile, files.CAKeyFile)
	case certOK:
		return nil, nil
	case keyOK:
		return nil, fmt.Errorf("%s exists without %s", files.CAKeyFile, files.CAFile)
	}
	ca, err := NewCA(devCACommonName, now, devCAValidity)
	if err != nil {
		return nil, err
	}
	if err := ca.Save(files.CAFile, files.CAKeyFile, false); err != nil {
		return nil, err
	}
	return ca, nil
}

// nodeCertFits reports why the node certificate in files cannot be used for
// nodeID and hosts at now, or nil if it can.
func nodeCertFits(files TLSFiles, nodeID string, hosts []string, now time.Time) error {
	pair, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	pool, err := LoadCertPool(files.CAFile)
	if err != nil {
		return err
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("%w: no client-auth usage", ErrInvalidCertificate)
	}
	if now.Add(devRenewBeforeEnd).After(leaf.NotAfter) {
		return fmt.Errorf("%w: expires at %s", ErrInvalidCertificate, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if id, ok := NodeIDFromCert(leaf); !ok || id != nodeID {
		return fmt.Errorf("%w: issued to node %q, not %q", ErrInvalidCertificate, id, nodeID)
	}
	for _, h := range hosts {
		if err := leaf.VerifyHostname(h); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidCertificate, err)
		}
	}
	return nil
}
