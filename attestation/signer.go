package attestation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
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
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		_, priv, gerr := GenerateKey(rand.Reader)
		if gerr != nil {
			return nil, false, fmt.Errorf("node key %s: %w", path, gerr)
		}
		if serr := SavePrivateKey(path, priv); serr != nil {
			return nil, false, fmt.Errorf("node key %s: %w", path, serr)
		}
		created = true
	}
	s, _, err = loadFileSigner(path)
	return s, created, err
}

// loadFileSigner loads an existing key file, refusing one that group or
// others may read.
func loadFileSigner(path string) (*FileSigner, bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, false, fmt.Errorf("node key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("node key %s: %w: mode %v lets others read it; chmod 600", path, ErrInvalidKey, fi.Mode().Perm())
	}
	key, err := LoadPrivateKey(path)
	if err != nil {
		return nil, false, fmt.Errorf("node key: %w", err)
	}
	s, err := NewFileSigner(key)
	if err != nil {
		return nil, false, fmt.Errorf("node key %s: %w", path, err)
	}
	return s, false, nil
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

// Keyring is a node's signing keys by key id: its primary key (the one it
// publishes for endorsement) and any others it holds, such as the next key
// of a scheduled rotation.
type Keyring interface {
	// Primary is the key the node publishes (Status) for endorsement.
	Primary() Signer
	// Lookup returns the held key with this key id.
	Lookup(keyID string) (Signer, bool)
}

// FileKeyring is the keys of a data directory: NodeKeyFile (the primary,
// generated on first start) and every other "node-signing*.key" file, e.g.
// the next key written by "trustfed keygen --out DIR/node-signing-next.key"
// ahead of a rotation. A lookup of a key it does not hold re-reads the
// directory, at most once per rescanEvery, so a key file added while the
// node runs is picked up without a restart.
type FileKeyring struct {
	dir     string
	primary *FileSigner

	mu       sync.Mutex
	keys     map[string]*FileSigner
	lastScan time.Time
}

// rescanEvery bounds how often a lookup miss re-reads the directory.
const rescanEvery = time.Second

// OpenFileKeyring opens (creating the primary key on first start) the keys
// of dir. created reports a new primary key.
func OpenFileKeyring(dir string) (k *FileKeyring, created bool, err error) {
	primary, created, err := LoadOrCreateFileSigner(filepath.Join(dir, NodeKeyFile))
	if err != nil {
		return nil, false, err
	}
	k = &FileKeyring{dir: dir, primary: primary, keys: map[string]*FileSigner{primary.KeyID(): primary}}
	if err := k.scan(); err != nil {
		return nil, false, err
	}
	return k, created, nil
}

// Primary returns the key in NodeKeyFile.
func (k *FileKeyring) Primary() Signer { return k.primary }

// Lookup returns the key with id keyID, re-reading the directory on a miss.
func (k *FileKeyring) Lookup(keyID string) (Signer, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if s, ok := k.keys[keyID]; ok {
		return s, true
	}
	if time.Since(k.lastScan) < rescanEvery {
		return nil, false
	}
	if err := k.scanLocked(); err != nil {
		return nil, false
	}
	s, ok := k.keys[keyID]
	return s, ok
}

func (k *FileKeyring) scan() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.scanLocked()
}

// scanLocked loads every node-signing*.key file of the directory; a file
// that does not load (unreadable, not a key, readable by others) is an
// error and adds nothing.
func (k *FileKeyring) scanLocked() error {
	k.lastScan = time.Now()
	paths, err := filepath.Glob(filepath.Join(k.dir, "node-signing*.key"))
	if err != nil {
		return fmt.Errorf("node keys in %s: %w", k.dir, err)
	}
	for _, p := range paths {
		s, _, err := loadFileSigner(p)
		if err != nil {
			return err
		}
		k.keys[s.KeyID()] = s
	}
	return nil
}
