package attestation

import "errors"

// Sentinel errors. Callers test them with errors.Is; the returned errors wrap
// them with detail.
var (
	// ErrInvalidPEM is returned when input is not the PEM block expected.
	ErrInvalidPEM = errors.New("invalid pem")
	// ErrInvalidKey is returned for a key of the wrong type, size or encoding.
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidNodeID is returned for a node ID that does not match ^[a-z0-9][a-z0-9-]{0,62}$.
	ErrInvalidNodeID = errors.New("invalid node id")
	// ErrInvalidHost is returned for a host that is neither an IP address nor a DNS name.
	ErrInvalidHost = errors.New("invalid host")
	// ErrInvalidCertificate is returned for a certificate that cannot serve its purpose.
	ErrInvalidCertificate = errors.New("invalid certificate")
	// ErrInvalidToken is returned by ParseToken for a malformed token secret.
	ErrInvalidToken = errors.New("invalid token")
	// ErrFileExists is returned when a helper refuses to overwrite a file.
	ErrFileExists = errors.New("file already exists")
)
