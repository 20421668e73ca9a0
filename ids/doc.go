// Package ids defines, once, the format of every identifier trustfed
// stores or accepts: organisations (and the issuers and admins named like
// them), jurisdictions, agreements, bearer tokens, nodes, dual
// authorisations, sessions, cascade events, admin changes, data categories,
// certificate serials and digests.
//
// It is a leaf: it imports nothing of trustfed, so the state machine, the
// Go SDK (client), attestation and the CLI all check identifiers against
// the same formats. Each caller words its own error (the state machine
// names the request field); Format.Check gives a default wording.
package ids
