package attestation

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// PEM block types.
const (
	pemTypePrivateKey   = "PRIVATE KEY"
	pemTypePublicKey    = "PUBLIC KEY"
	pemTypeCertificate  = "CERTIFICATE"
	pemTypeECPrivateKey = "EC PRIVATE KEY"
)

// GenerateKey returns a new ed25519 key pair drawn from rand.
func GenerateKey(rand io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	if rand == nil {
		return nil, nil, fmt.Errorf("generate key: %w: nil random source", ErrInvalidKey)
	}
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return pub, priv, nil
}

// MarshalPrivateKeyPEM encodes an ed25519 private key as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("marshal private key: %w: %d bytes", ErrInvalidKey, len(key))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes a PKCS#8 "PRIVATE KEY" PEM block holding an ed25519 key.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	der, err := decodePEM(data, pemTypePrivateKey)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w: %w", ErrInvalidKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("parse private key: %w: %T is not ed25519", ErrInvalidKey, k)
	}
	return priv, nil
}

// MarshalPublicKeyPEM encodes an ed25519 public key as a PKIX "PUBLIC KEY" PEM block.
func MarshalPublicKeyPEM(key ed25519.PublicKey) ([]byte, error) {
	der, err := marshalPublicKeyDER(key)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePublicKey, Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PKIX "PUBLIC KEY" PEM block holding an ed25519 key.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	der, err := decodePEM(data, pemTypePublicKey)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w: %w", ErrInvalidKey, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("parse public key: %w: %T is not ed25519", ErrInvalidKey, k)
	}
	return pub, nil
}

// SavePrivateKey writes key as PKCS#8 PEM to path with mode 0600. It never
// replaces an existing file (ErrFileExists): losing an identity key is not
// something to do by accident.
func SavePrivateKey(path string, key ed25519.PrivateKey) error {
	data, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	if err := WriteFile(path, data, keyFileMode, false); err != nil {
		return fmt.Errorf("save private key: %w", err)
	}
	return nil
}

// LoadPrivateKey reads an ed25519 private key written by SavePrivateKey.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return key, nil
}

// Fingerprint returns "SHA256:" followed by the unpadded standard base64 of
// the SHA-256 of the key's PKIX DER encoding (the OpenSSH style). It returns
// "" for a key of the wrong size.
func Fingerprint(pub ed25519.PublicKey) string {
	der, err := marshalPublicKeyDER(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

func marshalPublicKeyDER(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: ed25519 public key of %d bytes", ErrInvalidKey, len(pub))
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
	}
	return der, nil
}

// decodePEM returns the bytes of the first PEM block in data, which must be
// of one of the wanted types.
func decodePEM(data []byte, want ...string) ([]byte, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no pem block found", ErrInvalidPEM)
	}
	for _, w := range want {
		if block.Type == w {
			return block.Bytes, nil
		}
	}
	return nil, fmt.Errorf("%w: block type %q, want %q", ErrInvalidPEM, block.Type, want)
}
