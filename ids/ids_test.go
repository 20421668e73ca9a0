package ids_test

import (
	"errors"
	"go/build"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/ids"
)

func TestFormats(t *testing.T) {
	long := func(prefix string, n int) string { return prefix + strings.Repeat("a", n) }
	cases := []struct {
		format  *ids.Format
		valid   []string
		invalid []string
	}{
		{ids.Organization, []string{"acme", "acme-bank", "a1", long("a", 62)},
			[]string{"", "a", "Acme", "1acme", "-acme", "acme_bank", "acme bank", long("a", 63), "acme\n"}},
		{ids.Jurisdiction, []string{"EU", "US-NY", "x", strings.Repeat("A", 64)},
			[]string{"", "E U", "EU/FR", strings.Repeat("A", 65), "É"}},
		{ids.Agreement, []string{"agr-0123456789abcdef"},
			[]string{"", "agr-0123456789ABCDEF", "agr-0123456789abcde", "agr-0123456789abcdef0", "agx-0123456789abcdef"}},
		{ids.Token, []string{"0123456789ab"},
			[]string{"", "0123456789a", "0123456789abc", "0123456789AB", "tok-01234567"}},
		{ids.Node, []string{"n1", "0", "gw-1", long("a", 62)},
			[]string{"", "-n", "N1", "n_1", long("a", 63)}},
		{ids.Authorization, []string{"auth-0123456789abcdef"},
			[]string{"", "auth-0123456789abcdeg", "auth-0123", "agr-0123456789abcdef"}},
		{ids.Session, []string{"ses-0123456789abcdef"},
			[]string{"", "ses-0123456789ABCDEF", "ses-", "evt-0123456789abcdef"}},
		{ids.Event, []string{"evt-0123456789abcdef"},
			[]string{"", "evt-0123456789abcde", "ses-0123456789abcdef"}},
		{ids.AdminChange, []string{"chg-0123456789abcdef"},
			[]string{"", "chg-0123456789abcdefa", "chg_0123456789abcdef"}},
		{ids.DataCategory, []string{"health", "pii-basic"},
			[]string{"", "Health", "h", "health data"}},
		{ids.Serial, []string{"1f", "0", "deadbeef"},
			[]string{"", "1F", "0x1f", "1f "}},
		{ids.Digest, []string{"sha256:" + strings.Repeat("0f", 32)},
			[]string{"", "sha256:" + strings.Repeat("0F", 32), "sha512:" + strings.Repeat("0f", 32), "sha256:" + strings.Repeat("0f", 31)}},
	}
	require.Len(t, cases, len(ids.All()), "every format has cases")
	for _, c := range cases {
		t.Run(c.format.Name(), func(t *testing.T) {
			for _, s := range c.valid {
				require.True(t, c.format.Match(s), "%q", s)
				require.NoError(t, c.format.Check(s))
			}
			for _, s := range c.invalid {
				require.False(t, c.format.Match(s), "%q", s)
				err := c.format.Check(s)
				require.ErrorIs(t, err, ids.ErrInvalid, "%q", s)
				require.Contains(t, err.Error(), c.format.Name())
			}
		})
	}
}

func TestCheckMessages(t *testing.T) {
	require.EqualError(t, ids.Organization.Check(""), "invalid identifier: organization id is required")
	require.EqualError(t, ids.Organization.Check("Acme"), `invalid identifier: "Acme" is not a valid organization id (want ^[a-z][a-z0-9-]{1,62}$)`)
	err := ids.Token.Check(strings.Repeat("x", 200))
	require.Contains(t, err.Error(), strings.Repeat("x", 80)+`..."`, "long input is cut")
	require.NotContains(t, err.Error(), strings.Repeat("x", 81))
}

// The package is a leaf: client, attestation and registry/state import it,
// so it must import nothing of trustfed.
func TestIsALeaf(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	require.NoError(t, err)
	for _, imp := range pkg.Imports {
		require.False(t, strings.HasPrefix(imp, "github.com/trustfed/"), "ids imports %s", imp)
	}
}

// FuzzCheck: Check agrees with Match on any input, never panics, and an
// accepted identifier is short, printable ASCII.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"", "acme", "agr-0123456789abcdef", "EU", "sha256:", "\xff", strings.Repeat("a", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, format := range ids.All() {
			err := format.Check(s)
			if format.Match(s) != (err == nil) {
				t.Fatalf("%s: Match(%q) = %v, Check = %v", format.Name(), s, format.Match(s), err)
			}
			if err != nil {
				if !errors.Is(err, ids.ErrInvalid) {
					t.Fatalf("%s: Check(%q) = %v", format.Name(), s, err)
				}
				continue
			}
			if format != ids.Serial && len(s) > 71 {
				t.Fatalf("%s accepts %d bytes", format.Name(), len(s))
			}
			for _, r := range s {
				if r < '-' || r > 'z' {
					t.Fatalf("%s accepts %q", format.Name(), s)
				}
			}
		}
	})
}
