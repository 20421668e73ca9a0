package attestation

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ServerTLSConfig returns the TLS configuration of a registry node's
// listener: TLS 1.3 at least, serving files.CertFile/KeyFile, and verifying
// a client certificate against files.CAFile if the client presents one
// (tls.VerifyClientCertIfGiven). Peer nodes present their node certificates;
// humans and tools connect without one and authenticate with bearer tokens.
// files.CAKeyFile is not used.
func ServerTLSConfig(files TLSFiles) (*tls.Config, error) {
	if files.CAFile == "" || files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("server tls config: ca, certificate and key files are required")
	}
	pool, err := LoadCertPool(files.CAFile)
	if err != nil {
		return nil, fmt.Errorf("server tls config: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(files.CertFile, files.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("server tls config: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	}, nil
}

// ClientTLSConfig returns the TLS configuration of a client: TLS 1.3 at
// least, trusting the certificates in caFile ("" = the system roots), and
// presenting certFile/keyFile as client certificate if both are given ("" for
// both = no client certificate).
func ClientTLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if caFile != "" {
		pool, err := LoadCertPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("client tls config: %w", err)
		}
		cfg.RootCAs = pool
	}
	switch {
	case certFile == "" && keyFile == "":
	case certFile == "" || keyFile == "":
		return nil, errors.New("client tls config: certificate and key files go together")
	default:
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client tls config: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// LoadCertPool reads a PEM file of one or more certificates into a pool.
func LoadCertPool(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("load certificates %s: %w: no certificate found", path, ErrInvalidPEM)
	}
	return pool, nil
}
