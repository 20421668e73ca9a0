// Package evidence builds and verifies AG-783 evidence bundles from the
// registry's tamper-evident audit log.
//
// A bundle is one .tar.gz archive holding, in this order:
//
//	manifest.json                  format, creation time, filters, the signed tree (origin, size, root,
//	                               verifier key), entry count, and the size and SHA-256 of every other file
//	checkpoint.txt                 the registry-signed checkpoint (C2SP signed note) with its cosignatures
//	keys.json                      the registry's public decision-signing keys (GetKeys)
//	entries.jsonl                  one line per audit entry: sequence, leaf bytes (base64), inclusion
//	                               proof in the checkpoint's tree, and the decoded entry for readers
//	E01-registrations.json         AG783-E01 registration records with governance attestation
//	E02-agreements.json            AG783-E02 bilateral agreement documents
//	E03-trust-levels.json          AG783-E03 trust level computations (decisions, level changes)
//	E04-revocation-cascades.json   AG783-E04 revocation cascades with per-partner timestamps
//	E05-control-resolution.json    AG783-E05 most-restrictive control resolution of each decision
//	E06-audit-trail.json           AG783-E06 summary of the tamper-evident trail and how to verify it
//	E07-refused-attempts.json      AG783-E07 authentication failures and refused commands
//
// Only the entries carry the registry's signature (through the checkpoint
// and the inclusion proofs, and each decision's own signature): every other
// file is derived from them deterministically, so Verify recomputes each
// one and requires byte equality, and any edit of any file, or of the
// archive around them, makes verification fail. Verification needs public
// keys only.
//
// The package depends on proto, attestation and client only, never on the
// registry: a regulator can verify a bundle with this package alone.
package evidence
