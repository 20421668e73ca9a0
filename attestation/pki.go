package attestation

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"time"

	"github.com/trustfed/trustfed/ids"
)

// clockSkew is how far before "now" certificates become valid, so that a
// peer whose clock lags a little accepts a certificate issued a moment ago.
const clockSkew = 5 * time.Minute

// organization is the subject organisation of every certificate we issue.
const organization = "trustfed"

// CA is a certificate authority that issues node certificates.
type CA struct {
	// Cert is the CA certificate.
	Cert *x509.Certificate
	// Key is the CA private key (an ECDSA P-256 key for CAs made by NewCA).
	Key crypto.Signer
	// CertPEM is Cert PEM-encoded.
	CertPEM []byte
}

// NewCA creates a self-signed CA with an ECDSA P-256 key, valid from
// now-5m until now+validity.
func NewCA(commonName string, now time.Time, validity time.Duration) (*CA, error) {
	if commonName == "" || len(commonName) > 64 {
		return nil, fmt.Errorf("new ca: common name must be 1..64 characters, got %d", len(commonName))
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new ca: validity must be positive, got %s", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new ca: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{organization}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new ca: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new ca: parse certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der)}, nil
}

// KeyPEM returns the CA private key as a PKCS#8 "PRIVATE KEY" PEM block.
func (ca *CA) KeyPEM() ([]byte, error) {
	if ca == nil || ca.Key == nil {
		return nil, fmt.Errorf("ca key pem: %w: no key", ErrInvalidKey)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, fmt.Errorf("ca key pem: %w: %w", ErrInvalidKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der}), nil
}

// Save writes the CA certificate (0644) and key (0600). Unless overwrite is
// set it refuses to replace existing files (ErrFileExists).
func (ca *CA) Save(certPath, keyPath string, overwrite bool) error {
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	if err := WritePEMFiles(certPath, keyPath, ca.CertPEM, keyPEM, overwrite); err != nil {
		return fmt.Errorf("save ca: %w", err)
	}
	return nil
}

// LoadCA reads a CA certificate and its private key (PKCS#8, or SEC1 "EC
// PRIVATE KEY") from PEM files and checks that they belong together.
func LoadCA(certPEMPath, keyPEMPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPEMPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPEMPath)
	if err != nil {
		return nil, fmt.Errorf("load ca: %w", err)
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca %s: %w", certPEMPath, err)
	}
	return ca, nil
}

// ParseCA is LoadCA on PEM bytes.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: not a ca certificate", ErrInvalidCertificate)
	}
	key, err := parseSignerPEM(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: key does not match the ca certificate", ErrInvalidKey)
	}
	block, _ := pem.Decode(certPEM)
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(block)}, nil
}

// ParseCertificatePEM parses the first PEM "CERTIFICATE" block of data.
func ParseCertificatePEM(data []byte) (*x509.Certificate, error) {
	der, err := decodePEM(data, pemTypeCertificate)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w: %w", ErrInvalidCertificate, err)
	}
	return cert, nil
}

// IssueNode issues a certificate for a registry node, usable both as a TLS
// server and a TLS client certificate. Its subject common name is nodeID;
// its SANs are every host (as an IP address or DNS name) plus the URI
// spiffe://trustfed/node/<nodeID>. The key is a fresh ECDSA P-256 key. The
// certificate is valid from now-5m until now+validity, capped at the CA's
// own expiry. certPEM holds the node certificate only; keyPEM is PKCS#8.
func (ca *CA) IssueNode(nodeID string, hosts []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, nil, errors.New("issue node certificate: ca has no certificate or key")
	}
	if err := ValidateNodeID(nodeID); err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	if len(hosts) == 0 {
		return nil, nil, fmt.Errorf("issue node certificate: %w: at least one host is required", ErrInvalidHost)
	}
	ips, names, err := splitHosts(hosts)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("issue node certificate: validity must be positive, got %s", validity)
	}
	if now.After(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("issue node certificate: %w: ca expired at %s", ErrInvalidCertificate, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	uri, err := url.Parse(NodeSPIFFEID(nodeID))
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: nodeID, Organization: []string{organization}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              names,
		IPAddresses:           ips,
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: marshal key: %w", err)
	}
	return encodeCert(der), pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: keyDER}), nil
}

// IssueMember issues a member node's client certificate: its public key is
// the node's enrolled ed25519 key pub (the private key never leaves the
// node), its only URI SAN spiffe://trustfed/org/<org>/member/<node>, its
// only extended key usage TLS client authentication. It is valid from
// now-5m until now+validity, capped at the CA's own expiry. serial is the
// certificate's serial number in lower-case hex.
func (ca *CA) IssueMember(org, node string, pub ed25519.PublicKey, now time.Time, validity time.Duration) (certPEM []byte, serial string, notAfter time.Time, err error) {
	fail := func(err error) ([]byte, string, time.Time, error) {
		return nil, "", time.Time{}, fmt.Errorf("issue member certificate: %w", err)
	}
	switch {
	case ca == nil || ca.Cert == nil || ca.Key == nil:
		return fail(errors.New("ca has no certificate or key"))
	case !ids.Organization.Match(org):
		return fail(fmt.Errorf("organization id %q must match %s", org, ids.Organization))
	case len(pub) != ed25519.PublicKeySize:
		return fail(fmt.Errorf("%w: ed25519 public key of %d bytes", ErrInvalidKey, len(pub)))
	case validity <= 0:
		return fail(fmt.Errorf("validity must be positive, got %s", validity))
	case now.After(ca.Cert.NotAfter):
		return fail(fmt.Errorf("%w: ca expired at %s", ErrInvalidCertificate, ca.Cert.NotAfter.UTC().Format(time.RFC3339)))
	}
	if err := ValidateNodeID(node); err != nil {
		return fail(err)
	}
	notAfter = now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	uri, err := url.Parse(MemberSPIFFEID(org, node))
	if err != nil {
		return fail(err)
	}
	sn, err := randomSerial()
	if err != nil {
		return fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: node, OrganizationalUnit: []string{org}, Organization: []string{organization}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return fail(err)
	}
	// The notAfter the certificate holds (second precision).
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fail(err)
	}
	return encodeCert(der), sn.Text(16), cert.NotAfter, nil
}

func parseSignerPEM(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("parse key: %w: no pem block found", ErrInvalidPEM)
	}
	var k any
	var err error
	switch block.Type {
	case pemTypePrivateKey:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case pemTypeECPrivateKey:
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("parse key: %w: block type %q", ErrInvalidPEM, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: %w: %w", ErrInvalidKey, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse key: %w: %T cannot sign", ErrInvalidKey, k)
	}
	return signer, nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: der})
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
