package ids

import (
	"errors"
	"fmt"
	"regexp"
)

// ErrInvalid is wrapped by every error Check returns.
var ErrInvalid = errors.New("invalid identifier")

// Format is one identifier format: a name for messages and the regular
// expression an identifier matches in full.
type Format struct {
	name string
	re   *regexp.Regexp
}

func newFormat(name, pattern string) *Format {
	return &Format{name: name, re: regexp.MustCompile(pattern)}
}

// The identifier formats.
var (
	// Organization is an organisation id, also the format of passport
	// issuer ids and admin ids.
	Organization = newFormat("organization id", `^[a-z][a-z0-9-]{1,62}$`)
	// Jurisdiction is a jurisdiction or region code, e.g. "EU" or "US-NY".
	Jurisdiction = newFormat("jurisdiction", `^[A-Za-z0-9-]{1,64}$`)
	// Agreement is a bilateral agreement id (assigned by the registry).
	Agreement = newFormat("agreement id", `^agr-[0-9a-f]{16}$`)
	// Token is a bearer token id (attestation.NewToken).
	Token = newFormat("token id", `^[0-9a-f]{12}$`)
	// Node is a registry node id or a member node id.
	Node = newFormat("node id", `^[a-z0-9][a-z0-9-]{0,62}$`)
	// Authorization is a dual-authorisation request id.
	Authorization = newFormat("authorization id", `^auth-[0-9a-f]{16}$`)
	// Session is an interaction session id.
	Session = newFormat("session id", `^ses-[0-9a-f]{16}$`)
	// Event is a revocation event id, which is also its cascade's id.
	Event = newFormat("event id", `^evt-[0-9a-f]{16}$`)
	// AdminChange is an admin change id.
	AdminChange = newFormat("admin change id", `^chg-[0-9a-f]{16}$`)
	// DataCategory names a category of data in an agreement's scope.
	DataCategory = newFormat("data category", `^[a-z][a-z0-9-]{1,62}$`)
	// Serial is a certificate serial in lowercase hex (callers bound its length).
	Serial = newFormat("serial", `^[0-9a-f]+$`)
	// Digest is a SHA-256 digest: "sha256:" and 64 lowercase hex digits.
	Digest = newFormat("digest", `^sha256:[0-9a-f]{64}$`)
)

// All lists every format (for tests and documentation).
func All() []*Format {
	return []*Format{Organization, Jurisdiction, Agreement, Token, Node, Authorization, Session, Event, AdminChange, DataCategory, Serial, Digest}
}

// Name is the format's name for messages ("organization id").
func (f *Format) Name() string { return f.name }

// String is the format's regular expression.
func (f *Format) String() string { return f.re.String() }

// Match reports whether s is an identifier of this format.
func (f *Format) Match(s string) bool { return f.re.MatchString(s) }

// Check returns nil if s is an identifier of this format, else an error
// wrapping ErrInvalid that quotes s (at most 80 bytes of it).
func (f *Format) Check(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: %s is required", ErrInvalid, f.name)
	case !f.Match(s):
		return fmt.Errorf("%w: %q is not a valid %s (want %s)", ErrInvalid, truncate(s), f.name, f.re)
	}
	return nil
}

// truncate shortens s to 80 bytes (and "...") for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
