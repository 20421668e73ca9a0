package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/ids"
)

// Defaults and limits of the passport commands.
const (
	defaultPassportValidity = "365d"
	maxValidityDays         = 100000
	passportFileMode        = 0o644
	serialBytes             = 8
	validityHintDays        = "a positive Go duration such as 8760h, or a number of days such as 365d"
)

// newIssuerCmd builds the "issuer" group. Offline, issuers sign passports
// with "issuer passport issue"; commands that talk to the registry about
// issuers are added to this group elsewhere.
func newIssuerCmd() *cobra.Command {
	cmd := newGroupCmd("issuer", "Passport issuers and the passports they sign")
	cmd.Long = `Passport issuers are accredited assessors: they attest an organisation's
governance maturity level in a signed governance passport.

"trustfed issuer passport issue" signs a passport with the issuer's key,
offline.`
	passport := newGroupCmd("passport", "Issue governance passports with an issuer key (offline)")
	passport.AddCommand(newPassportIssueCmd())
	cmd.AddCommand(passport)
	cmd.AddCommand(issuerAdminCommands()...)
	return cmd
}

// newPassportCmd builds the "passport" group: reading passports, and a
// hidden "passport issue", the same as "issuer passport issue".
func newPassportCmd() *cobra.Command {
	cmd := newGroupCmd("passport", "Read governance passports (offline)")
	issue := newPassportIssueCmd()
	issue.Hidden = true
	issue.Short = `Same as "trustfed issuer passport issue"`
	cmd.AddCommand(newPassportDecodeCmd(), issue, passportRevokeCmd())
	return cmd
}

// passportIssueOptions are the flags of "issuer passport issue".
type passportIssueOptions struct {
	issuerKey    string
	issuerID     string
	orgID        string
	orgPubKey    string
	level        string
	jurisdiction string
	digest       string
	serial       string
	valid        string
	notBefore    string
	out          string
	force        bool
}

// claims checks the flags and returns the passport's claims (without the
// organisation key, read from a file later) issued at now.
func (o *passportIssueOptions) claims(now time.Time) (attestation.PassportClaims, error) {
	var c attestation.PassportClaims
	if !ids.Organization.Match(o.issuerID) {
		return c, usageErrorf("--issuer-id %q is not a valid issuer id (%s)", o.issuerID, ids.Organization)
	}
	if err := validateOrgID("--org-id", o.orgID); err != nil {
		return c, err
	}
	level, err := parseLevel(o.level)
	if err != nil {
		return c, err
	}
	validity, err := parseValidity(o.valid)
	if err != nil {
		return c, err
	}
	nbf := now
	if o.notBefore != "" {
		if nbf, err = time.Parse(time.RFC3339, o.notBefore); err != nil {
			return c, usageErrorf("--not-before %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", o.notBefore)
		}
	}
	serial := o.serial
	if serial == "" {
		if serial, err = randomSerial(); err != nil {
			return c, err
		}
	}
	if o.out == "" {
		return c, usageErrorf("--out is required")
	}
	c = attestation.PassportClaims{
		Serial:               serial,
		IssuerID:             o.issuerID,
		OrganizationID:       o.orgID,
		OrganizationKey:      make(ed25519.PublicKey, ed25519.PublicKeySize), // read from --org-pubkey later
		Level:                level,
		Jurisdiction:         o.jurisdiction,
		ControlProfileDigest: o.digest,
		IssuedAt:             now,
		NotBefore:            nbf,
		ExpiresAt:            nbf.Add(validity),
	}
	if err := c.Validate(); err != nil {
		msg := strings.TrimPrefix(err.Error(), attestation.ErrPassportMalformed.Error()+": ")
		return c, usageErrorf("invalid passport flags: %s", msg)
	}
	return c, nil
}

// issuedPassport is what "issuer passport issue" wrote, for -o json.
type issuedPassport struct {
	File           string `json:"file"`
	Serial         string `json:"serial"`
	IssuerID       string `json:"issuerId"`
	KeyID          string `json:"keyId"`
	OrganizationID string `json:"organizationId"`
	Level          uint32 `json:"level"`
	NotBefore      string `json:"notBefore"`
	ExpiresAt      string `json:"expiresAt"`
}

func newPassportIssueCmd() *cobra.Command {
	var o passportIssueOptions
	cmd := &cobra.Command{
		Use:   "issue --issuer-key KEY --issuer-id ID --org-id ORG --org-pubkey ORG.pub --level N --jurisdiction J --out FILE",
		Short: "Sign a governance passport for an organisation (offline)",
		Long: `Sign a governance passport with the issuer's private key and write it to
FILE. A passport is a JWT signed with EdDSA (ed25519): it attests the
organisation's id and public key, its maturity level (0 UNTRUSTED,
1 VERIFIED, 2 ATTESTED, 3 TRUSTED, 4 PRIVILEGED: number or name), its
jurisdiction (e.g. EU, US-NY) and optionally the digest of its control
profile. It is valid from --not-before (default now) for --valid (default
365d); --serial defaults to 16 random hex digits. The registry accepts it
only while the issuer is accredited for that level.

Works on local files only; FILE is never replaced unless --force is given.`,
		Example: `  trustfed issuer passport issue --issuer-key assessor.key --issuer-id assessor-1 \
    --org-id acme --org-pubkey acme.key.pub --level 3 --jurisdiction EU --out acme.passport`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			c, err := o.claims(now)
			if err != nil {
				return err
			}
			issuerKey, err := attestation.LoadPrivateKey(o.issuerKey)
			if err != nil {
				return err
			}
			if c.OrganizationKey, err = loadPublicKey(o.orgPubKey); err != nil {
				return err
			}
			token, err := attestation.IssuePassport(c, issuerKey)
			if err != nil {
				return err
			}
			if err := attestation.WriteFile(o.out, []byte(token+"\n"), passportFileMode, o.force); err != nil {
				return err
			}
			issued, err := attestation.ParsePassportUnverified(token)
			if err != nil {
				return err
			}
			res := issuedPassport{
				File:           o.out,
				Serial:         issued.Serial,
				IssuerID:       issued.IssuerID,
				KeyID:          attestation.Fingerprint(issuerKey.Public().(ed25519.PublicKey)),
				OrganizationID: issued.OrganizationID,
				Level:          issued.Level,
				NotBefore:      formatPassportTime(issued.NotBefore),
				ExpiresAt:      formatPassportTime(issued.ExpiresAt),
			}
			if jsonOutput(cmd) {
				return writePlainJSON(cmd.OutOrStdout(), res)
			}
			t := newTable(cmd.OutOrStdout())
			t.row("Passport:", res.File)
			t.row("Serial:", res.Serial)
			t.row("Issuer:", res.IssuerID+" ("+res.KeyID+")")
			t.row("Organisation:", res.OrganizationID)
			t.row("Level:", formatLevel(res.Level))
			t.row("Valid from:", res.NotBefore)
			t.row("Expires:", res.ExpiresAt)
			return t.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.issuerKey, "issuer-key", "", "issuer's private key file, PKCS#8 PEM (required)")
	f.StringVar(&o.issuerID, "issuer-id", "", "issuer id, "+ids.Organization.String()+" (required)")
	f.StringVar(&o.orgID, "org-id", "", "organisation id, "+ids.Organization.String()+" (required)")
	f.StringVar(&o.orgPubKey, "org-pubkey", "", "organisation's public key file, PKIX PEM (required)")
	f.StringVar(&o.level, "level", "", "attested level, 0..4 or its name (required)")
	f.StringVar(&o.jurisdiction, "jurisdiction", "", "jurisdiction, 1..64 of [A-Za-z0-9-], e.g. EU or US-NY (required)")
	f.StringVar(&o.digest, "profile-digest", "", "digest of the organisation's control profile, sha256:<64 hex>")
	f.StringVar(&o.serial, "serial", "", "serial, 1..128 printable ASCII characters (default 16 random hex digits)")
	f.StringVar(&o.valid, "valid", defaultPassportValidity, "validity: a Go duration (8760h) or days (365d)")
	f.StringVar(&o.notBefore, "not-before", "", "start of validity, RFC 3339 (default now)")
	f.StringVar(&o.out, "out", "", "passport output file (required)")
	f.BoolVar(&o.force, "force", false, "replace an existing output file")
	for _, name := range []string{"issuer-key", "issuer-id", "org-id", "org-pubkey", "level", "jurisdiction", "out"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// decodedPassport is a passport as "passport decode" shows it.
type decodedPassport struct {
	Verified                   bool   `json:"verified"`
	Serial                     string `json:"serial"`
	IssuerID                   string `json:"issuerId"`
	KeyID                      string `json:"keyId"`
	OrganizationID             string `json:"organizationId"`
	OrganizationKey            string `json:"organizationKey"`
	OrganizationKeyFingerprint string `json:"organizationKeyFingerprint"`
	Level                      uint32 `json:"level"`
	LevelName                  string `json:"levelName"`
	Jurisdiction               string `json:"jurisdiction"`
	ControlProfileDigest       string `json:"controlProfileDigest,omitempty"`
	IssuedAt                   string `json:"issuedAt"`
	NotBefore                  string `json:"notBefore"`
	ExpiresAt                  string `json:"expiresAt"`
	NotYetValid                bool   `json:"notYetValid"`
	Expired                    bool   `json:"expired"`
}

func newPassportDecodeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "decode FILE",
		Short: "Show the claims of a passport without verifying it",
		Long: `Show what a passport claims: serial, issuer and the key id it names,
organisation and key, level, jurisdiction, control-profile digest and
validity period, and whether that period is over (or not begun) now.

decode checks the passport's format only. It does NOT verify the signature,
nor that the issuer is accredited: only the registry's verification says
whether a passport counts.`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := readPassportFile(args[0])
			if err != nil {
				return err
			}
			c, err := attestation.ParsePassportUnverified(token)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			kid, err := attestation.PassportKeyID(token)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			d := decodePassport(c, kid, time.Now())
			if jsonOutput(cmd) {
				return writePlainJSON(cmd.OutOrStdout(), d)
			}
			return writeDecodedPassport(cmd.OutOrStdout(), d)
		},
	}
}

func decodePassport(c *attestation.PassportClaims, kid string, now time.Time) decodedPassport {
	d := decodedPassport{
		Serial:                     c.Serial,
		IssuerID:                   c.IssuerID,
		KeyID:                      kid,
		OrganizationID:             c.OrganizationID,
		OrganizationKey:            base64.RawURLEncoding.EncodeToString(c.OrganizationKey),
		OrganizationKeyFingerprint: attestation.Fingerprint(c.OrganizationKey),
		Level:                      c.Level,
		Jurisdiction:               c.Jurisdiction,
		ControlProfileDigest:       c.ControlProfileDigest,
		IssuedAt:                   formatPassportTime(c.IssuedAt),
		NotBefore:                  formatPassportTime(c.NotBefore),
		ExpiresAt:                  formatPassportTime(c.ExpiresAt),
		NotYetValid:                now.Before(c.NotBefore) || now.Before(c.IssuedAt),
		Expired:                    !now.Before(c.ExpiresAt),
	}
	if c.Level <= maxLevel {
		d.LevelName = levelNames[c.Level]
	}
	return d
}

func writeDecodedPassport(w io.Writer, d decodedPassport) error {
	t := newTable(w)
	t.row("Signature:", "NOT VERIFIED (decode reads the passport; only the registry verifies it)")
	t.row("Serial:", d.Serial)
	t.row("Issuer:", d.IssuerID)
	t.row("Key ID:", d.KeyID)
	t.row("Organisation:", d.OrganizationID)
	t.row("Organisation key:", d.OrganizationKeyFingerprint)
	t.row("Level:", formatLevel(d.Level))
	t.row("Jurisdiction:", d.Jurisdiction)
	t.row("Control profile:", orDash(d.ControlProfileDigest))
	t.row("Issued at:", d.IssuedAt)
	nbf, exp := d.NotBefore, d.ExpiresAt
	if d.NotYetValid {
		nbf += " (not yet valid)"
	}
	if d.Expired {
		exp += " (expired)"
	}
	t.row("Not before:", nbf)
	t.row("Expires:", exp)
	return t.flush()
}

func formatPassportTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339)
}

// parseValidity reads a validity period: a Go duration (8760h) or a whole
// number of days (365d).
func parseValidity(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err == nil {
			if n == 0 || n > maxValidityDays {
				return 0, usageErrorf("--valid %q: days must be 1..%d", s, maxValidityDays)
			}
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usageErrorf("--valid %q must be %s", s, validityHintDays)
	}
	return d, nil
}

// randomSerial returns 16 random hex digits.
func randomSerial() (string, error) {
	var b [serialBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random serial: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// loadPublicKey reads an ed25519 public key from a PKIX PEM file.
func loadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load public key: %w", err)
	}
	pub, err := attestation.ParsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	return pub, nil
}

// readPassportFile reads a passport token from path, bounded in size, without
// surrounding white space.
func readPassportFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read passport: %w", err)
	}
	defer func() { _ = f.Close() }()
	const limit = attestation.MaxPassportSize + 1024 // room for white space
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return "", fmt.Errorf("read passport %s: %w", path, err)
	}
	if len(data) > limit {
		return "", fmt.Errorf("read passport %s: %w: file is over %d bytes", path, attestation.ErrPassportMalformed, limit)
	}
	return string(bytes.TrimSpace(data)), nil
}
