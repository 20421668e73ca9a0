package attestation

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
)

// Token secrets look like tf_<id>_<secret>: id is 12 lowercase hex
// characters (6 random bytes) naming the token, secret is 32 random bytes in
// unpadded base64url (43 characters).
const (
	tokenPrefix     = "tf_"
	tokenIDLen      = 12
	tokenSecretSize = 32
	tokenSecretLen  = 43
	// TokenLen is the length of every token secret.
	TokenLen = len(tokenPrefix) + tokenIDLen + 1 + tokenSecretLen
)

// NewToken draws a new token from rand and returns its public id and the
// full secret to hand to its holder once. Servers keep only the id and
// TokenHash(secret).
func NewToken(rand io.Reader) (id, secret string, err error) {
	if rand == nil {
		return "", "", fmt.Errorf("new token: %w: nil random source", ErrInvalidToken)
	}
	var buf [tokenIDLen/2 + tokenSecretSize]byte
	if _, err := io.ReadFull(rand, buf[:]); err != nil {
		return "", "", fmt.Errorf("new token: %w", err)
	}
	id = hex.EncodeToString(buf[:tokenIDLen/2])
	secret = tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(buf[tokenIDLen/2:])
	return id, secret, nil
}

// ParseToken checks that secret has the token format and returns its id.
// It does not say whether the token is known or valid on any server.
func ParseToken(secret string) (id string, err error) {
	if len(secret) != TokenLen {
		return "", fmt.Errorf("%w: length %d, want %d", ErrInvalidToken, len(secret), TokenLen)
	}
	if secret[:len(tokenPrefix)] != tokenPrefix {
		return "", fmt.Errorf("%w: missing %q prefix", ErrInvalidToken, tokenPrefix)
	}
	id = secret[len(tokenPrefix) : len(tokenPrefix)+tokenIDLen]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", fmt.Errorf("%w: id is not 12 lowercase hex characters", ErrInvalidToken)
		}
	}
	if secret[len(tokenPrefix)+tokenIDLen] != '_' {
		return "", fmt.Errorf("%w: missing separator after id", ErrInvalidToken)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(secret[len(secret)-tokenSecretLen:])
	if err != nil || len(raw) != tokenSecretSize {
		return "", fmt.Errorf("%w: secret is not 32 bytes of unpadded base64url", ErrInvalidToken)
	}
	return id, nil
}

// TokenHash is the SHA-256 of a token secret: what servers store and compare.
func TokenHash(secret string) [32]byte {
	return sha256.Sum256([]byte(secret))
}

// TokenMatches reports, in constant time, whether secret hashes to hash.
func TokenMatches(secret string, hash [32]byte) bool {
	h := TokenHash(secret)
	return subtle.ConstantTimeCompare(h[:], hash[:]) == 1
}
