package attestation

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzSeeds are tokens near the valid one: the fuzzer mutates from them.
func fuzzSeeds(t testing.TB) []string {
	good := issueTest(t, testClaims())
	parts := strings.Split(good, ".")
	wire := payloadOf(t, good)
	return []string{
		good,
		"",
		"..",
		"a.b.c",
		good + "=",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:],
		rawToken(`{"alg":"none","typ":"trustfed-passport+jwt"}`, wire, nil),
		rawToken(testHeader(testIssuerKey), wire, testOtherKey),
		rawToken(testHeader(testIssuerKey), strings.Replace(wire, `"level":3`, `"level":4`, 1), nil),
		rawToken(testHeader(testIssuerKey), strings.Replace(wire, `"exp":1803902400`, `"exp":1e300`, 1), testIssuerKey),
		rawToken(testHeader(testIssuerKey), `{"level":0}`, testIssuerKey),
	}
}

// FuzzParsePassport: no input panics, and whatever parses re-issues to a
// passport that parses to the same claims.
func FuzzParsePassport(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := ParsePassportUnverified(token)
		if err != nil {
			require.ErrorIs(t, err, ErrPassportMalformed)
			require.Nil(t, c)
			return
		}
		require.NoError(t, c.Validate())
		again, err := IssuePassport(*c, testOtherKey)
		require.NoError(t, err)
		c2, err := ParsePassportUnverified(again)
		require.NoError(t, err)
		require.Equal(t, c, c2)
	})
}

// FuzzVerifyPassport: of all the strings the fuzzer derives from a valid
// passport, only the passport itself verifies.
func FuzzVerifyPassport(f *testing.F) {
	good := issueTest(f, testClaims())
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := VerifyPassport(testVerifyInput(token))
		if token == good {
			require.NoError(t, err)
			require.Equal(t, "acme", c.OrganizationID)
			return
		}
		require.Error(t, err)
		require.Nil(t, c)
	})
}
