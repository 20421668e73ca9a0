package main

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
)

// passportFixture is an issuer key pair and an organisation key pair on disk.
type passportFixture struct {
	dir       string
	issuerKey string
	orgKey    string
}

func newPassportFixture(t *testing.T) passportFixture {
	t.Helper()
	dir := t.TempDir()
	f := passportFixture{dir: dir, issuerKey: filepath.Join(dir, "assessor.key"), orgKey: filepath.Join(dir, "acme.key")}
	keygenT(t, f.issuerKey)
	keygenT(t, f.orgKey)
	return f
}

// issueArgs are the arguments of a valid "issuer passport issue" to out,
// followed by extra.
func (f passportFixture) issueArgs(out string, extra ...string) []string {
	return append([]string{"issuer", "passport", "issue",
		"--issuer-key", f.issuerKey, "--issuer-id", "assessor-1",
		"--org-id", "acme", "--org-pubkey", f.orgKey + ".pub",
		"--level", "trusted", "--jurisdiction", "EU", "--out", out}, extra...)
}

func TestPassportIssueVerifyDecode(t *testing.T) {
	f := newPassportFixture(t)
	out := filepath.Join(f.dir, "acme.passport")
	digest := "sha256:" + strings.Repeat("0f", 32)
	code, stdout, stderr := runCLI(nil, f.issueArgs(out,
		"--serial", "acme-2999-001", "--profile-digest", digest,
		"--not-before", "2999-01-01T00:00:00Z", "--valid", "30d")...)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "Serial:        acme-2999-001\n")
	require.Contains(t, stdout, "Expires:       2999-01-31T00:00:00Z\n")
	require.Contains(t, stdout, "Level:         3 (TRUSTED)\n")

	// The registry's verification accepts what the CLI issued.
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	issuerPriv, err := attestation.LoadPrivateKey(f.issuerKey)
	require.NoError(t, err)
	orgPriv, err := attestation.LoadPrivateKey(f.orgKey)
	require.NoError(t, err)
	issuerPub := issuerPriv.Public().(ed25519.PublicKey)
	orgPub := orgPriv.Public().(ed25519.PublicKey)
	c, err := attestation.VerifyPassport(attestation.VerifyPassportInput{
		Token: strings.TrimSpace(string(data)),
		Issuer: func(id string) (attestation.PassportIssuer, bool) {
			return attestation.PassportIssuer{ID: id, PublicKey: issuerPub, MaxLevel: 4}, id == "assessor-1"
		},
		OrganizationID:  "acme",
		OrganizationKey: orgPub,
		Now:             time.Date(2999, 1, 15, 0, 0, 0, 0, time.UTC),
	})
	require.NoError(t, err)
	require.Equal(t, uint32(3), c.Level)
	require.Equal(t, digest, c.ControlProfileDigest)
	require.Equal(t, time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC), c.NotBefore)

	// decode: a table that says it did not verify.
	code, stdout, stderr = runCLI(nil, "passport", "decode", out)
	require.Equal(t, exitOK, code, stderr)
	for _, want := range []string{
		"Signature:         NOT VERIFIED",
		"Serial:            acme-2999-001\n",
		"Issuer:            assessor-1\n",
		"Key ID:            " + attestation.Fingerprint(issuerPub) + "\n",
		"Organisation:      acme\n",
		"Organisation key:  " + attestation.Fingerprint(orgPub) + "\n",
		"Level:             3 (TRUSTED)\n",
		"Jurisdiction:      EU\n",
		"Control profile:   " + digest + "\n",
		"Not before:        2999-01-01T00:00:00Z (not yet valid)\n",
		"Expires:           2999-01-31T00:00:00Z\n",
	} {
		require.Contains(t, stdout, want)
	}
	require.Regexp(t, `Issued at:\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n`, stdout)

	// An expired passport (issued by the library: the CLI only issues
	// passports that still have a future).
	expired, err := attestation.IssuePassport(attestation.PassportClaims{
		Serial: "old", IssuerID: "assessor-1", OrganizationID: "acme", OrganizationKey: orgPub,
		Level: 1, Jurisdiction: "US-NY",
		IssuedAt:  time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		ExpiresAt: time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC),
	}, issuerPriv)
	require.NoError(t, err)
	expiredFile := filepath.Join(f.dir, "old.passport")
	require.NoError(t, os.WriteFile(expiredFile, []byte(expired+"\n"), 0o644))
	code, stdout, stderr = runCLI(nil, "passport", "decode", expiredFile)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "Expires:           2021-01-01T00:00:00Z (expired)\n")
	require.Contains(t, stdout, "Level:             1 (VERIFIED)\n")
	require.Contains(t, stdout, "Control profile:   -\n")

	code, stdout, stderr = runCLI(nil, "-o", "json", "passport", "decode", expiredFile)
	require.Equal(t, exitOK, code, stderr)
	var d decodedPassport
	require.NoError(t, json.Unmarshal([]byte(stdout), &d))
	require.False(t, d.Verified)
	require.True(t, d.Expired)
	require.False(t, d.NotYetValid)
	require.Equal(t, "VERIFIED", d.LevelName)
	require.Equal(t, "2021-01-01T00:00:00Z", d.ExpiresAt)
	require.Equal(t, attestation.Fingerprint(issuerPub), d.KeyID)
	require.Equal(t, attestation.Fingerprint(orgPub), d.OrganizationKeyFingerprint)
}

func TestPassportIssueDefaults(t *testing.T) {
	f := newPassportFixture(t)
	out := filepath.Join(f.dir, "p.jwt")
	before := time.Now().Truncate(time.Second)
	code, stdout, stderr := runCLI(nil, append([]string{"-o", "json"}, f.issueArgs(out)...)...)
	require.Equal(t, exitOK, code, stderr)
	var got issuedPassport
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{16}$`), got.Serial)
	nbf, err := time.Parse(time.RFC3339, got.NotBefore)
	require.NoError(t, err)
	exp, err := time.Parse(time.RFC3339, got.ExpiresAt)
	require.NoError(t, err)
	require.False(t, nbf.Before(before))
	require.Equal(t, 365*24*time.Hour, exp.Sub(nbf))

	code, stdout, stderr = runCLI(nil, "passport", "decode", out)
	require.Equal(t, exitOK, code, stderr)
	require.NotContains(t, stdout, "expired")
	require.Contains(t, stdout, "Control profile:   -\n")

	// Not replaced without --force; replaced with it.
	code, _, stderr = runCLI(nil, f.issueArgs(out)...)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "already exists")
	code, _, stderr = runCLI(nil, f.issueArgs(out, "--force", "--serial", "second", "--not-before", "2999-01-01T00:00:00Z")...)
	require.Equal(t, exitOK, code, stderr)
	code, stdout, stderr = runCLI(nil, "-o", "json", "passport", "decode", out)
	require.Equal(t, exitOK, code, stderr)
	var d decodedPassport
	require.NoError(t, json.Unmarshal([]byte(stdout), &d))
	require.Equal(t, "second", d.Serial)
	require.True(t, d.NotYetValid)
	require.False(t, d.Expired)

	// The hidden "passport issue" is the same command.
	code, _, stderr = runCLI(nil, append([]string{"passport"}, f.issueArgs(filepath.Join(f.dir, "alias.jwt"))[2:]...)...)
	require.Equal(t, exitOK, code, stderr)
	code, stdout, _ = runCLI(nil, "passport")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "decode")
	require.NotContains(t, stdout, "issue")
	code, stdout, _ = runCLI(nil, "issuer", "passport")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "issue")
}

func TestPassportCLIErrors(t *testing.T) {
	f := newPassportFixture(t)
	out := filepath.Join(f.dir, "p.jwt")
	garbage := filepath.Join(f.dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("eyJhbGciOiJub25lIn0.e30.\n"), 0o644))
	usage := []struct {
		name string
		args []string
		want string
	}{
		{"missing flag", []string{"issuer", "passport", "issue", "--out", out}, "not set"},
		{"bad level", f.issueArgs(out, "--level", "9"), "out of range"},
		{"bad issuer id", f.issueArgs(out, "--issuer-id", "Assessor"), "not a valid issuer id"},
		{"bad org id", f.issueArgs(out, "--org-id", "ACME"), "not a valid organisation id"},
		{"bad validity", f.issueArgs(out, "--valid", "a year"), "--valid"},
		{"zero days", f.issueArgs(out, "--valid", "0d"), "days must be"},
		{"negative duration", f.issueArgs(out, "--valid", "-5h"), "--valid"},
		{"bad not-before", f.issueArgs(out, "--not-before", "yesterday"), "RFC 3339"},
		{"bad jurisdiction", f.issueArgs(out, "--jurisdiction", "US NY"), `claim "jurisdiction"`},
		{"bad digest", f.issueArgs(out, "--profile-digest", "md5:00"), `claim "control_profile_digest"`},
		{"bad serial", f.issueArgs(out, "--serial", "a b"), `claim "jti"`},
		{"validity past 9999", f.issueArgs(out, "--not-before", "9999-12-01T00:00:00Z", "--valid", "60d"), `claim "exp"`},
		{"expired on issue", f.issueArgs(out, "--not-before", "2020-01-01T00:00:00Z", "--valid", "1d"), "is not after issued-at"},
		{"decode without file", []string{"passport", "decode"}, "expects 1 argument"},
	}
	for _, tt := range usage {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(nil, tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.want)
			_, err := os.Stat(out)
			require.ErrorIs(t, err, os.ErrNotExist)
		})
	}
	runtime := []struct {
		name string
		args []string
		want string
	}{
		{"no issuer key", f.issueArgs(out, "--issuer-key", filepath.Join(f.dir, "nope")), "no such file"},
		{"public key as issuer key", f.issueArgs(out, "--issuer-key", f.issuerKey+".pub"), "invalid pem"},
		{"private key as org key", f.issueArgs(out, "--org-pubkey", f.orgKey), "invalid pem"},
		{"decode missing file", []string{"passport", "decode", filepath.Join(f.dir, "nope")}, "no such file"},
		{"decode garbage", []string{"passport", "decode", garbage}, "passport malformed"},
	}
	for _, tt := range runtime {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(nil, tt.args...)
			require.Equal(t, exitError, code, stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.want)
		})
	}
}

func TestParseValidity(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"365d", 365 * 24 * time.Hour, true},
		{"1d", 24 * time.Hour, true},
		{"8760h", 8760 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"100000d", 100000 * 24 * time.Hour, true},
		{"100001d", 0, false},
		{"0d", 0, false},
		{"-1d", 0, false},
		{"1.5d", 0, false},
		{"d", 0, false},
		{"0s", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseValidity(tt.in)
		if !tt.ok {
			require.Error(t, err, tt.in)
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.want, got, tt.in)
	}
}
