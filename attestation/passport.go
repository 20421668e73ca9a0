package attestation

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/trustfed/trustfed/ids"
)

// A governance passport is a JWT (RFC 7519) in JWS compact serialisation,
// signed with EdDSA (ed25519) by an accredited issuer through
// github.com/golang-jwt/jwt/v5. Its protected header is exactly
// {"alg":"EdDSA","kid":<Fingerprint of the issuer key>,"typ":PassportType};
// its payload carries exactly the claims of PassportClaims, each once, with
// the names below, and the times as integer seconds since the Unix epoch.
// Anything else (other header parameters such as "crit", other claims,
// fractional or out-of-range times, padded or non-canonical base64, a token
// over MaxPassportSize) is refused as ErrPassportMalformed.
const (
	// PassportType is the "typ" header of every passport.
	PassportType = "trustfed-passport+jwt"
	// PassportAlgorithm is the only accepted "alg" header.
	PassportAlgorithm = "EdDSA"
	// MaxPassportSize bounds the length of a passport token in bytes.
	MaxPassportSize = 8 << 10
	// MaxPassportLevel is the highest level a passport can attest (PRIVILEGED).
	MaxPassportLevel = 4
)

// Sentinel errors of passports. VerifyPassport and ParsePassportUnverified
// wrap exactly one of them with detail; test them with errors.Is.
var (
	// ErrPassportMalformed: not a well-formed passport (encoding, header, claims).
	ErrPassportMalformed = errors.New("passport malformed")
	// ErrIssuerUnknown: the "iss" claim names no accredited issuer.
	ErrIssuerUnknown = errors.New("passport issuer unknown")
	// ErrIssuerWithdrawn: the issuer's accreditation was withdrawn.
	ErrIssuerWithdrawn = errors.New("passport issuer withdrawn")
	// ErrPassportSignature: the signature does not verify with the issuer's
	// key, or the "kid" header does not name that key.
	ErrPassportSignature = errors.New("passport signature invalid")
	// ErrPassportNotYetValid: now is before "nbf" or before "iat".
	ErrPassportNotYetValid = errors.New("passport not yet valid")
	// ErrPassportExpired: now is at or after "exp".
	ErrPassportExpired = errors.New("passport expired")
	// ErrPassportSubject: the passport names another organisation or key.
	ErrPassportSubject = errors.New("passport subject mismatch")
	// ErrIssuerLevel: the attested level is above what the issuer may attest.
	ErrIssuerLevel = errors.New("passport level above issuer accreditation")
	// ErrPassportRevoked: the passport's serial is revoked.
	ErrPassportRevoked = errors.New("passport revoked")
)

// Claim names of a passport.
const (
	claimSerial       = "jti"
	claimIssuer       = "iss"
	claimSubject      = "sub"
	claimOrgKey       = "org_key"
	claimLevel        = "level"
	claimJurisdiction = "jurisdiction"
	claimDigest       = "control_profile_digest"
	claimIssuedAt     = "iat"
	claimNotBefore    = "nbf"
	claimExpiresAt    = "exp"
)

// Header parameter names of a passport.
const (
	headerAlg = "alg"
	headerTyp = "typ"
	headerKid = "kid"
)

var (
	passportClaimNames = map[string]bool{
		claimSerial: true, claimIssuer: true, claimSubject: true, claimOrgKey: true, claimLevel: true,
		claimJurisdiction: true, claimDigest: true, claimIssuedAt: true, claimNotBefore: true, claimExpiresAt: true,
	}
	passportTimeClaims  = map[string]bool{claimIssuedAt: true, claimNotBefore: true, claimExpiresAt: true}
	passportHeaderNames = map[string]bool{headerAlg: true, headerTyp: true, headerKid: true}
)

// Bounds of passport times, in seconds since the Unix epoch: after the
// epoch, no later than 9999-12-31T23:59:59Z.
const (
	minPassportUnix = 1
	maxPassportUnix = 253402300799
	maxSerialLen    = 128
)

// PassportClaims are the facts a passport attests. Times count in whole
// seconds: IssuePassport drops sub-second parts, and parsed claims are in UTC.
type PassportClaims struct {
	// Serial ("jti") is the issuer's unique serial: 1..128 printable ASCII
	// characters without spaces ('!'..'~').
	Serial string
	// IssuerID ("iss") names the accredited issuer, ^[a-z][a-z0-9-]{1,62}$.
	IssuerID string
	// OrganizationID ("sub") names the organisation, ^[a-z][a-z0-9-]{1,62}$.
	OrganizationID string
	// OrganizationKey ("org_key", unpadded base64url of the 32 raw bytes) is
	// the organisation's ed25519 public key.
	OrganizationKey ed25519.PublicKey
	// Level ("level") is the attested maturity level, 0..4.
	Level uint32
	// Jurisdiction ("jurisdiction"), e.g. "EU" or "US-NY": 1..64 of [A-Za-z0-9-].
	Jurisdiction string
	// ControlProfileDigest ("control_profile_digest") is "sha256:" and 64
	// lowercase hex digits, or empty (the claim is then omitted).
	ControlProfileDigest string
	// IssuedAt ("iat"), NotBefore ("nbf") and ExpiresAt ("exp") are all
	// required; ExpiresAt must be after both others. A passport counts from
	// the later of NotBefore and IssuedAt until just before ExpiresAt.
	IssuedAt, NotBefore, ExpiresAt time.Time
}

// Validate checks every claim, at second precision, and names the first
// wrong one in an ErrPassportMalformed error.
func (c PassportClaims) Validate() error {
	c = c.truncated()
	bad := func(claim, format string, args ...any) error {
		return fmt.Errorf("%w: claim %q: %s", ErrPassportMalformed, claim, fmt.Sprintf(format, args...))
	}
	if n := len(c.Serial); n == 0 || n > maxSerialLen {
		return bad(claimSerial, "serial of %d characters, want 1..%d", n, maxSerialLen)
	}
	for i := 0; i < len(c.Serial); i++ {
		if ch := c.Serial[i]; ch < '!' || ch > '~' {
			return bad(claimSerial, "serial holds a character that is not printable ascii at offset %d", i)
		}
	}
	if !ids.Organization.Match(c.IssuerID) {
		return bad(claimIssuer, "issuer id %q does not match %s", c.IssuerID, ids.Organization)
	}
	if !ids.Organization.Match(c.OrganizationID) {
		return bad(claimSubject, "organisation id %q does not match %s", c.OrganizationID, ids.Organization)
	}
	if len(c.OrganizationKey) != ed25519.PublicKeySize {
		return bad(claimOrgKey, "organisation key of %d bytes, want %d", len(c.OrganizationKey), ed25519.PublicKeySize)
	}
	if c.Level > MaxPassportLevel {
		return bad(claimLevel, "level %d is above %d", c.Level, MaxPassportLevel)
	}
	if !ids.Jurisdiction.Match(c.Jurisdiction) {
		return bad(claimJurisdiction, "jurisdiction %q does not match %s", c.Jurisdiction, ids.Jurisdiction)
	}
	if c.ControlProfileDigest != "" && !ids.Digest.Match(c.ControlProfileDigest) {
		return bad(claimDigest, "digest %q does not match %s", c.ControlProfileDigest, ids.Digest)
	}
	for _, tc := range []struct {
		claim string
		t     time.Time
	}{{claimIssuedAt, c.IssuedAt}, {claimNotBefore, c.NotBefore}, {claimExpiresAt, c.ExpiresAt}} {
		if tc.t.IsZero() {
			return bad(tc.claim, "required")
		}
		if u := tc.t.Unix(); u < minPassportUnix || u > maxPassportUnix {
			return bad(tc.claim, "%d seconds since the epoch is out of range %d..%d", u, minPassportUnix, maxPassportUnix)
		}
	}
	// A passport is valid from max(nbf, iat) until exp: that must not be empty.
	if !c.ExpiresAt.After(c.NotBefore) {
		return bad(claimExpiresAt, "expiry %s is not after not-before %s",
			c.ExpiresAt.UTC().Format(time.RFC3339), c.NotBefore.UTC().Format(time.RFC3339))
	}
	if !c.ExpiresAt.After(c.IssuedAt) {
		return bad(claimExpiresAt, "expiry %s is not after issued-at %s",
			c.ExpiresAt.UTC().Format(time.RFC3339), c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// truncated returns c with its times at whole seconds, in UTC.
func (c PassportClaims) truncated() PassportClaims {
	for _, t := range []*time.Time{&c.IssuedAt, &c.NotBefore, &c.ExpiresAt} {
		if !t.IsZero() {
			*t = t.Truncate(time.Second).UTC()
		}
	}
	return c
}

// passportWire is the JSON payload of a passport.
type passportWire struct {
	jwt.RegisteredClaims
	OrgKey               string  `json:"org_key"`
	Level                *uint32 `json:"level"`
	Jurisdiction         string  `json:"jurisdiction"`
	ControlProfileDigest string  `json:"control_profile_digest,omitempty"`
}

func (c PassportClaims) wire() *passportWire {
	level := c.Level
	return &passportWire{
		RegisteredClaims: jwt.RegisteredClaims{
			ID:        c.Serial,
			Issuer:    c.IssuerID,
			Subject:   c.OrganizationID,
			IssuedAt:  jwt.NewNumericDate(c.IssuedAt),
			NotBefore: jwt.NewNumericDate(c.NotBefore),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
		OrgKey:               base64.RawURLEncoding.EncodeToString(c.OrganizationKey),
		Level:                &level,
		Jurisdiction:         c.Jurisdiction,
		ControlProfileDigest: c.ControlProfileDigest,
	}
}

// claims converts a decoded payload and validates it.
func (w *passportWire) claims() (*PassportClaims, error) {
	if w.Level == nil {
		return nil, fmt.Errorf("%w: claim %q: required", ErrPassportMalformed, claimLevel)
	}
	key, err := base64.RawURLEncoding.Strict().DecodeString(w.OrgKey)
	if err != nil {
		return nil, fmt.Errorf("%w: claim %q: not unpadded base64url", ErrPassportMalformed, claimOrgKey)
	}
	c := &PassportClaims{
		Serial:               w.ID,
		IssuerID:             w.Issuer,
		OrganizationID:       w.Subject,
		OrganizationKey:      ed25519.PublicKey(key),
		Level:                *w.Level,
		Jurisdiction:         w.Jurisdiction,
		ControlProfileDigest: w.ControlProfileDigest,
		IssuedAt:             numericTime(w.IssuedAt),
		NotBefore:            numericTime(w.NotBefore),
		ExpiresAt:            numericTime(w.ExpiresAt),
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func numericTime(d *jwt.NumericDate) time.Time {
	if d == nil {
		return time.Time{}
	}
	return d.UTC()
}

// IssuePassport validates c and returns it as a passport signed by
// issuerKey: a compact JWS with the header alg "EdDSA", typ PassportType and
// kid = Fingerprint of the issuer's public key. Times are truncated to whole
// seconds. Signing is deterministic: the same claims and key give the same
// token.
func IssuePassport(c PassportClaims, issuerKey ed25519.PrivateKey) (string, error) {
	if len(issuerKey) != ed25519.PrivateKeySize {
		return "", fmt.Errorf("issue passport: %w: issuer private key of %d bytes", ErrInvalidKey, len(issuerKey))
	}
	c = c.truncated()
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("issue passport: %w", err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c.wire())
	tok.Header[headerTyp] = PassportType
	tok.Header[headerKid] = Fingerprint(issuerKey.Public().(ed25519.PublicKey))
	s, err := tok.SignedString(issuerKey)
	if err != nil {
		return "", fmt.Errorf("issue passport: %w", err)
	}
	if len(s) > MaxPassportSize {
		return "", fmt.Errorf("issue passport: %w: token of %d bytes is over %d", ErrPassportMalformed, len(s), MaxPassportSize)
	}
	return s, nil
}

// ParsePassportUnverified decodes a passport WITHOUT verifying its
// signature, validity period or issuer: use it to find the issuer to verify
// against, or to display a passport. It still checks the shape (size,
// encoding, header, every claim) and returns ErrPassportMalformed otherwise.
func ParsePassportUnverified(token string) (*PassportClaims, error) {
	c, _, err := parsePassport(token)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// PassportKeyID returns the "kid" header of a passport (the Fingerprint of
// the key it claims to be signed with), checking the passport's shape like
// ParsePassportUnverified and verifying nothing.
func PassportKeyID(token string) (string, error) {
	_, kid, err := parsePassport(token)
	return kid, err
}

// passportParser is the jwt parser of passports: EdDSA only, strict
// base64url. Time validation is configured per call in VerifyPassport.
func passportParser(opts ...jwt.ParserOption) *jwt.Parser {
	return jwt.NewParser(append([]jwt.ParserOption{
		jwt.WithValidMethods([]string{PassportAlgorithm}),
		jwt.WithStrictDecoding(),
	}, opts...)...)
}

// parsePassport checks the shape of token and returns its claims and kid.
func parsePassport(token string) (*PassportClaims, string, error) {
	malformed := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrPassportMalformed, fmt.Sprintf(format, args...))
	}
	if len(token) > MaxPassportSize {
		return nil, "", malformed("token of %d bytes is over %d", len(token), MaxPassportSize)
	}
	// Only the base64url alphabet and the two dots: Go's decoder would
	// otherwise skip '\r' and '\n', letting different strings carry the
	// same signature.
	for i := 0; i < len(token); i++ {
		if c := token[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return nil, "", malformed("character at offset %d is not base64url", i)
		}
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, "", malformed("%d segments, want 3", len(parts))
	}
	enc := base64.RawURLEncoding.Strict()
	header, err := enc.DecodeString(parts[0])
	if err != nil {
		return nil, "", malformed("header is not unpadded base64url")
	}
	payload, err := enc.DecodeString(parts[1])
	if err != nil {
		return nil, "", malformed("payload is not unpadded base64url")
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, "", malformed("signature is not %d bytes of unpadded base64url", ed25519.SignatureSize)
	}
	if err := checkMembers(header, passportHeaderNames, nil); err != nil {
		return nil, "", malformed("header: %v", err)
	}
	if err := checkMembers(payload, passportClaimNames, passportTimeClaims); err != nil {
		return nil, "", malformed("claims: %v", err)
	}
	var w passportWire
	tok, _, err := passportParser().ParseUnverified(token, &w)
	if err != nil {
		return nil, "", malformed("%v", err)
	}
	if alg, _ := tok.Header[headerAlg].(string); alg != PassportAlgorithm {
		return nil, "", malformed("header %q is %v, want %q", headerAlg, tok.Header[headerAlg], PassportAlgorithm)
	}
	if typ, _ := tok.Header[headerTyp].(string); typ != PassportType {
		return nil, "", malformed("header %q is %v, want %q", headerTyp, tok.Header[headerTyp], PassportType)
	}
	kid, _ := tok.Header[headerKid].(string)
	if !validKeyID(kid) {
		return nil, "", malformed("header %q is %v, want a key fingerprint", headerKid, tok.Header[headerKid])
	}
	c, err := w.claims()
	if err != nil {
		return nil, "", err
	}
	return c, kid, nil
}

// validKeyID reports whether kid has the form of a Fingerprint.
func validKeyID(kid string) bool {
	b64, ok := strings.CutPrefix(kid, "SHA256:")
	if !ok {
		return false
	}
	sum, err := base64.RawStdEncoding.Strict().DecodeString(b64)
	return err == nil && len(sum) == 32
}

// checkMembers checks that data is one JSON object whose member names are
// all allowed, each present once, with exact case (encoding/json would
// otherwise match names case-insensitively and keep the last duplicate).
// Members named in integers must be integers in the passport time range.
func checkMembers(data []byte, allowed, integers map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a json object")
	}
	seen := make(map[string]bool, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		name, ok := tok.(string)
		if !ok {
			return errors.New("member name is not a string")
		}
		if !allowed[name] {
			return fmt.Errorf("unexpected member %q", name)
		}
		if seen[name] {
			return fmt.Errorf("duplicate member %q", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		if integers[name] {
			n, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
			if err != nil || n < minPassportUnix || n > maxPassportUnix {
				return fmt.Errorf("member %q is not an integer in %d..%d", name, minPassportUnix, maxPassportUnix)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the json object")
	}
	return nil
}

// PassportIssuer is an accredited passport issuer as the registry knows it.
type PassportIssuer struct {
	// ID is the issuer id passports carry in "iss".
	ID string
	// PublicKey verifies the issuer's passports.
	PublicKey ed25519.PublicKey
	// MaxLevel is the highest level the issuer is accredited to attest.
	MaxLevel uint32
	// Withdrawn is set once the accreditation is withdrawn: none of the
	// issuer's passports count any more.
	Withdrawn bool
}

// VerifyPassportInput is what VerifyPassport needs.
type VerifyPassportInput struct {
	// Token is the compact passport.
	Token string
	// Issuer looks up an accredited issuer by id.
	Issuer func(id string) (PassportIssuer, bool)
	// OrganizationID and OrganizationKey are the organisation the passport
	// must name.
	OrganizationID  string
	OrganizationKey ed25519.PublicKey
	// Now is the time of the decision (the caller's clock, or the time
	// stamped in a Raft command).
	Now time.Time
	// SerialRevoked reports whether a serial is revoked; nil means none is.
	SerialRevoked func(serial string) bool
}

// VerifyPassport verifies a passport for an organisation at in.Now and
// returns its claims. The checks run in this order, and the first that
// fails decides the error:
//
//  1. shape (as ParsePassportUnverified; alg other than EdDSA, typ other
//     than PassportType): ErrPassportMalformed
//  2. "iss" is not an accredited issuer: ErrIssuerUnknown
//  3. "kid" does not name the issuer's key, or the signature does not
//     verify with it: ErrPassportSignature
//  4. the accreditation is withdrawn: ErrIssuerWithdrawn
//  5. in.Now is before "nbf" or before "iat": ErrPassportNotYetValid
//  6. in.Now is at or after "exp": ErrPassportExpired
//  7. "sub" or "org_key" is not in.OrganizationID / in.OrganizationKey:
//     ErrPassportSubject
//  8. "level" is above the issuer's MaxLevel: ErrIssuerLevel
//  9. in.SerialRevoked reports the serial: ErrPassportRevoked
//
// There is no leeway for clock skew: the validity period is exactly
// [nbf, exp) in whole seconds, so every replica that decides with the same
// Now reaches the same answer. Callers that want a grace period must say so
// by choosing Now.
func VerifyPassport(in VerifyPassportInput) (*PassportClaims, error) {
	c, kid, err := parsePassport(in.Token)
	if err != nil {
		return nil, fmt.Errorf("verify passport: %w", err)
	}
	if in.Issuer == nil {
		return nil, fmt.Errorf("verify passport: %w: no issuer lookup", ErrIssuerUnknown)
	}
	iss, ok := in.Issuer(c.IssuerID)
	if !ok || iss.ID != c.IssuerID {
		return nil, fmt.Errorf("verify passport: %w: %q is not accredited", ErrIssuerUnknown, c.IssuerID)
	}
	if len(iss.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("verify passport: %w: accredited key of %q is %d bytes", ErrIssuerUnknown, c.IssuerID, len(iss.PublicKey))
	}
	if want := Fingerprint(iss.PublicKey); kid != want {
		return nil, fmt.Errorf("verify passport: %w: kid %s is not the key of issuer %q (%s)", ErrPassportSignature, kid, c.IssuerID, want)
	}
	var w passportWire
	parser := passportParser(
		jwt.WithTimeFunc(func() time.Time { return in.Now }),
		jwt.WithExpirationRequired(),
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(iss.ID),
		jwt.WithLeeway(0),
	)
	_, err = parser.ParseWithClaims(in.Token, &w, func(*jwt.Token) (any, error) { return iss.PublicKey, nil })
	if err != nil && !errors.Is(err, jwt.ErrTokenInvalidClaims) {
		// Everything but claims validation happens before the claims are
		// checked: shape was checked above, so this is the signature.
		return nil, fmt.Errorf("verify passport: %w: %v", ErrPassportSignature, err)
	}
	if iss.Withdrawn {
		return nil, fmt.Errorf("verify passport: %w: accreditation of %q", ErrIssuerWithdrawn, iss.ID)
	}
	if err != nil {
		return nil, fmt.Errorf("verify passport: %w", passportClaimsError(err, c, in.Now))
	}
	// The claims verified are the claims parsed: same bytes, same decoder.
	if c, err = w.claims(); err != nil {
		return nil, fmt.Errorf("verify passport: %w", err)
	}
	if c.OrganizationID != in.OrganizationID {
		return nil, fmt.Errorf("verify passport: %w: issued to organisation %q, not %q", ErrPassportSubject, c.OrganizationID, in.OrganizationID)
	}
	if !c.OrganizationKey.Equal(in.OrganizationKey) {
		return nil, fmt.Errorf("verify passport: %w: issued to key %s, not %s", ErrPassportSubject, Fingerprint(c.OrganizationKey), keyLabel(in.OrganizationKey))
	}
	if c.Level > iss.MaxLevel {
		return nil, fmt.Errorf("verify passport: %w: level %d, issuer %q may attest up to %d", ErrIssuerLevel, c.Level, iss.ID, iss.MaxLevel)
	}
	if in.SerialRevoked != nil && in.SerialRevoked(c.Serial) {
		return nil, fmt.Errorf("verify passport: %w: serial %q", ErrPassportRevoked, c.Serial)
	}
	return c, nil
}

// passportClaimsError maps jwt's claim validation errors to ours.
func passportClaimsError(err error, c *PassportClaims, now time.Time) error {
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fmt.Errorf("%w: valid from %s, now %s", ErrPassportNotYetValid, at(c.NotBefore), at(now))
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fmt.Errorf("%w: issued at %s, now %s", ErrPassportNotYetValid, at(c.IssuedAt), at(now))
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Errorf("%w: expired at %s, now %s", ErrPassportExpired, at(c.ExpiresAt), at(now))
	default:
		return fmt.Errorf("%w: %v", ErrPassportMalformed, err)
	}
}

// keyLabel names a key in an error message.
func keyLabel(k ed25519.PublicKey) string {
	if fp := Fingerprint(k); fp != "" {
		return fp
	}
	return fmt.Sprintf("an invalid key of %d bytes", len(k))
}
