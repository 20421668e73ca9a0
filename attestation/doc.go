// Package attestation holds trustfed's identity and transport-security
// primitives: ed25519 keys for organisations and nodes, the small PKI that
// issues ECDSA P-256 TLS certificates to registry nodes, TLS configurations
// for servers and clients, and bearer-token secrets.
//
// The package is pure in the sense of the design card: it imports nothing of
// ours but the identifier formats of ids, never reads the clock (every function that depends on time takes it
// as an argument) and takes its randomness from an io.Reader where the
// caller may want to control it. File helpers (SavePrivateKey, EnsureDevTLS,
// ...) only touch the paths they are given.
//
// Node certificates carry the URI SAN spiffe://trustfed/node/<node-id> and
// both the server- and client-auth extended key usages, so one certificate
// authenticates a node when it serves and when it calls a peer. Humans and
// admin tools authenticate with bearer tokens of the form
// tf_<12 hex id>_<43 base64url characters>; servers store only TokenHash.
package attestation
