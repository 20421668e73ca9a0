package attestation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// NodeKeyFile is the name of a registry node's signing key in its data
// directory.
const NodeKeyFile = "node-signing.key"

// Signer signs for one registry node with a key whose private half never
// leaves it. The file signer below keeps an ed25519 key in a 0600 file; an
// HSM or PKCS#11 signer implements the same two methods (Public returns the
// token's ed25519 public key, Sign asks the token to sign
// "trustfed/" + purpose + "/v1\x00" + msg, see SignedMessage) and is passed
// where the server would otherwise open the file.
type Signer interface {
	// Public returns the raw 32-byte ed25519 public key.
	Public() ed25519.PublicKey
	// Sign signs msg for purpose p. It waits at most as long as ctx
	// allows (a hardware token may be slow or busy).
	Sign(ctx context.Context, p Purpose, msg []byte) ([]byte, error)
}

// SignedMessage is the exact byte string a Signer signs for purpose p: an
// HSM signer passes it to the token as the ed25519 message.
func SignedMessage(p Purpose, msg []byte) ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("%w: invalid purpose %q", ErrSignature, string(p))
	}
	return signedMessage(p, msg), nil
}

// FileSigner is a Signer over an ed25519 key held in memory, read from (or
// first written to) a 0600 PEM file.
type FileSigner struct {
	key ed25519.PrivateKey
	pub ed25519.PublicKey
}

// NewFileSigner wraps an in-memory key (tests and tools).
func NewFileSigner(key ed25519.PrivateKey) (*FileSigner, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("new signer: %w: private key of %d bytes", ErrInvalidKey, len(key))
	}
	return &FileSigner{key: key, pub: key.Public().(ed25519.PublicKey)}, nil
}

// LoadOrCreateFileSigner opens the key at path, generating it (mode 0600)
// when no file exists yet. created reports a new key. A file that exists
// but does not parse is an error: a node never replaces its key silently.
func LoadOrCreateFileSigner(path string) (s *FileSigner, created bool, err error) {
	key, err := LoadPrivateKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, gerr := GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, false, fmt.Errorf("node key %s: %w", path, gerr)
		}
		if serr := SavePrivateKey(path, priv); serr != nil {
			return nil, false, fmt.Errorf("node key %s: %w", path, serr)
		}
		key, created = priv, true
	} else if err != nil {
		return nil, false, fmt.Errorf("node key: %w", err)
	}
	if fi, err := os.Stat(path); err != nil {
		return nil, false, fmt.Errorf("node key: %w", err)
	} else if fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("node key %s: %w: mode %v lets others read it; chmod 600", path, ErrInvalidKey, fi.Mode().Perm())
	}
	s, err = NewFileSigner(key)
	if err != nil {
		return nil, false, fmt.Errorf("node key %s: %w", path, err)
	}
	return s, created, nil
}

// Public returns the signer's public key.
func (s *FileSigner) Public() ed25519.PublicKey { return s.pub }

// KeyID returns the signer's key id (the fingerprint of its public key).
func (s *FileSigner) KeyID() string { return Fingerprint(s.pub) }

// Sign signs msg for purpose p.
func (s *FileSigner) Sign(ctx context.Context, p Purpose, msg []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	if !p.valid() {
		return nil, fmt.Errorf("sign: %w: invalid purpose %q", ErrSignature, string(p))
	}
	return Sign(s.key, p, msg), nil
}
