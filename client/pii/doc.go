// Package pii finds personal data and secrets in a message and applies a
// per-type action to each finding before the message crosses an
// organisation's boundary.
//
// Scan reports findings of the 14 PII types of trustfedv1.PiiType, each with
// a byte span and a confidence between 0 and 1. Confidence comes from the
// structure a value must have: a Luhn checksum and an issuer prefix for
// cards, the area/group/serial ranges of a US SSN, a JWT header that decodes
// to JSON naming an "alg", the prefixes of AWS and GitHub credentials, PEM
// private-key blocks, addresses parsed by net/netip, and the words around a
// value (a password after "password:", a key after "api_key="). A finding is
// reported only at or above its type's threshold (Thresholds, which an
// operator can override and persist as a JSON file). Overlapping findings
// are resolved deterministically: the more confident one wins, then the
// longer, then the earlier, then the lower type number.
//
// Apply turns findings into a message that may leave: per type BLOCK
// refuses the whole message (a *BlockedError naming the types, no text),
// REDACT replaces the value with "[REDACTED:<TYPE>]", HASH replaces it with
// "[HASH:<TYPE>:<hex>]", the first 16 bytes of HMAC-SHA-256 under a
// per-agreement key (equal values give equal tokens under one key and
// unrelated tokens under another), and PASS leaves it. PolicyFor reads the
// policy out of a decision's resolved control profile at the effective
// trust level, the same way the registry does.
//
// The package imports nothing of trustfed but the API in proto/, so that
// the member-side gateway and any other embedder can use it alone. Its
// measured precision and recall on the labelled corpus in testdata/ are in
// docs/pii.md.
package pii
