package client

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Environment variables read by ConfigFromEnv (and the trustfed CLI).
const (
	EnvAddr      = "TRUSTFED_ADDR"
	EnvToken     = "TRUSTFED_TOKEN"
	EnvTokenFile = "TRUSTFED_TOKEN_FILE"
	EnvCACert    = "TRUSTFED_CACERT"
	// EnvCert and EnvKey name a member node's client certificate and its
	// key (PEM files).
	EnvCert = "TRUSTFED_CERT"
	EnvKey  = "TRUSTFED_KEY"
)

// maxTokenFileSize bounds what ReadTokenFile reads.
const maxTokenFileSize = 4096

// ConfigFromEnv returns a Config from the environment: TRUSTFED_ADDR
// (default DefaultAddr), TRUSTFED_TOKEN, or else the token read from
// TRUSTFED_TOKEN_FILE, TRUSTFED_CACERT, and TRUSTFED_CERT/TRUSTFED_KEY (a
// member node's client certificate). Timeout is DefaultTimeout.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		Addr:       os.Getenv(EnvAddr),
		Token:      os.Getenv(EnvToken),
		CACertFile: os.Getenv(EnvCACert),
		CertFile:   os.Getenv(EnvCert),
		KeyFile:    os.Getenv(EnvKey),
		Timeout:    DefaultTimeout,
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if path := os.Getenv(EnvTokenFile); cfg.Token == "" && path != "" {
		tok, err := ReadTokenFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config from env: %s: %w", EnvTokenFile, err)
		}
		cfg.Token = tok
	}
	return cfg, nil
}

// ReadTokenFile reads a bearer token from path, without surrounding
// whitespace. The file must hold a non-empty token and at most 4 KiB.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read token file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	if len(data) > maxTokenFileSize {
		return "", fmt.Errorf("read token file %s: larger than %d bytes", path, maxTokenFileSize)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("read token file %s: %w", path, errors.New("file is empty"))
	}
	if err := validateToken(tok); err != nil {
		return "", fmt.Errorf("read token file %s: %w", path, err)
	}
	return tok, nil
}
