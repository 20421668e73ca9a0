package attestation

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// testPassportKey returns a deterministic ed25519 key drawn from seed byte b.
func testPassportKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

var (
	testIssuerKey = testPassportKey(1)
	testOrgKey    = testPassportKey(2)
	testOtherKey  = testPassportKey(3)
)

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

// testClaims is a valid passport for "acme" by "assessor-1", valid for
// 365 days from testNow.
func testClaims() PassportClaims {
	return PassportClaims{
		Serial:               "0123456789abcdef",
		IssuerID:             "assessor-1",
		OrganizationID:       "acme",
		OrganizationKey:      pubOf(testOrgKey),
		Level:                3,
		Jurisdiction:         "EU",
		ControlProfileDigest: "sha256:" + strings.Repeat("ab", 32),
		IssuedAt:             testNow,
		NotBefore:            testNow,
		ExpiresAt:            testNow.Add(365 * testDay),
	}
}

func testIssuer() PassportIssuer {
	return PassportIssuer{ID: "assessor-1", PublicKey: pubOf(testIssuerKey), MaxLevel: 4}
}

func lookupOf(issuers ...PassportIssuer) func(string) (PassportIssuer, bool) {
	return func(id string) (PassportIssuer, bool) {
		for _, iss := range issuers {
			if iss.ID == id {
				return iss, true
			}
		}
		return PassportIssuer{}, false
	}
}

func testVerifyInput(token string) VerifyPassportInput {
	return VerifyPassportInput{
		Token:           token,
		Issuer:          lookupOf(testIssuer()),
		OrganizationID:  "acme",
		OrganizationKey: pubOf(testOrgKey),
		Now:             testNow.Add(testDay),
	}
}

func issueTest(t testing.TB, c PassportClaims) string {
	t.Helper()
	tok, err := IssuePassport(c, testIssuerKey)
	require.NoError(t, err)
	return tok
}

// rawToken builds a compact JWS from literal header and payload JSON,
// signed by key with plain ed25519 (nil key: an empty signature). Tests
// use it to build tokens the library would refuse to build.
func rawToken(header, payload string, key ed25519.PrivateKey) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	var sig []byte
	if key != nil {
		sig = ed25519.Sign(key, []byte(signing))
	}
	return signing + "." + enc.EncodeToString(sig)
}

// payloadOf returns the payload JSON of a token.
func payloadOf(t testing.TB, token string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	require.NoError(t, err)
	return string(b)
}

func testHeader(key ed25519.PrivateKey) string {
	return `{"alg":"EdDSA","kid":"` + Fingerprint(pubOf(key)) + `","typ":"trustfed-passport+jwt"}`
}

func TestIssueAndVerifyPassport(t *testing.T) {
	want := testClaims()
	tok := issueTest(t, want)
	require.LessOrEqual(t, len(tok), 1024)

	got, err := VerifyPassport(testVerifyInput(tok))
	require.NoError(t, err)
	require.Equal(t, &want, got)

	unverified, err := ParsePassportUnverified(tok)
	require.NoError(t, err)
	require.Equal(t, &want, unverified)

	kid, err := PassportKeyID(tok)
	require.NoError(t, err)
	require.Equal(t, Fingerprint(pubOf(testIssuerKey)), kid)

	// Header and claims on the wire.
	header, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	require.NoError(t, err)
	require.JSONEq(t, testHeader(testIssuerKey), string(header))
	require.JSONEq(t, `{
		"jti": "0123456789abcdef", "iss": "assessor-1", "sub": "acme",
		"org_key": "`+base64.RawURLEncoding.EncodeToString(pubOf(testOrgKey))+`",
		"level": 3, "jurisdiction": "EU",
		"control_profile_digest": "sha256:`+strings.Repeat("ab", 32)+`",
		"iat": 1772366400, "nbf": 1772366400, "exp": 1803902400
	}`, payloadOf(t, tok))

	// Deterministic.
	require.Equal(t, tok, issueTest(t, want))
}

func TestPassportClaimsRoundTrip(t *testing.T) {
	loc := time.FixedZone("UTC+2", 2*3600)
	tests := []struct {
		name string
		edit func(*PassportClaims)
		want func(*PassportClaims)
	}{
		{"as is", func(*PassportClaims) {}, nil},
		{"no digest", func(c *PassportClaims) { c.ControlProfileDigest = "" }, nil},
		{"level 0", func(c *PassportClaims) { c.Level = 0 }, nil},
		{"longest fields", func(c *PassportClaims) {
			c.Serial = strings.Repeat("~", 128)
			c.IssuerID = "i" + strings.Repeat("-", 62)
			c.OrganizationID = "o" + strings.Repeat("9", 62)
			c.Jurisdiction = strings.Repeat("Z", 64)
		}, nil},
		{"nbf before iat", func(c *PassportClaims) { c.NotBefore = testNow.Add(-testDay) }, nil},
		{"sub-second times are truncated, zones become UTC", func(c *PassportClaims) {
			c.IssuedAt = testNow.Add(999 * time.Millisecond).In(loc)
			c.NotBefore = testNow.Add(time.Nanosecond)
		}, func(c *PassportClaims) {
			c.IssuedAt = testNow
			c.NotBefore = testNow
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClaims()
			tt.edit(&c)
			want := c
			if tt.want != nil {
				tt.want(&want)
			}
			got, err := ParsePassportUnverified(issueTest(t, c))
			require.NoError(t, err)
			require.Equal(t, &want, got)
		})
	}
}

func TestTC6VerifyPassportFailures(t *testing.T) {
	good := issueTest(t, testClaims())
	claims := testClaims()
	wire := payloadOf(t, good)

	hs256 := jwt.NewWithClaims(jwt.SigningMethodHS256, claims.wire())
	hs256.Header["typ"] = PassportType
	hs256.Header["kid"] = Fingerprint(pubOf(testIssuerKey))
	hsToken, err := hs256.SignedString([]byte("a shared secret of thirty-two bytes!"))
	require.NoError(t, err)

	jwtTyp := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims.wire())
	jwtTyp.Header["kid"] = Fingerprint(pubOf(testIssuerKey))
	jwtTypToken, err := jwtTyp.SignedString(testIssuerKey)
	require.NoError(t, err)

	withClaims := func(edit func(*PassportClaims)) string {
		c := testClaims()
		edit(&c)
		return issueTest(t, c)
	}
	withdrawn := testIssuer()
	withdrawn.Withdrawn = true
	otherKeyIssuer := testIssuer()
	otherKeyIssuer.PublicKey = pubOf(testOtherKey)
	level2 := testIssuer()
	level2.MaxLevel = 2

	tests := []struct {
		name string
		edit func(*VerifyPassportInput)
		want error
	}{
		{"not a token", func(in *VerifyPassportInput) { in.Token = "not a token" }, ErrPassportMalformed},
		{"empty", func(in *VerifyPassportInput) { in.Token = "" }, ErrPassportMalformed},
		{"alg none", func(in *VerifyPassportInput) {
			in.Token = rawToken(`{"alg":"none","kid":"`+Fingerprint(pubOf(testIssuerKey))+`","typ":"trustfed-passport+jwt"}`, wire, nil)
		}, ErrPassportMalformed},
		{"alg none with a signature", func(in *VerifyPassportInput) {
			in.Token = rawToken(`{"alg":"none","kid":"`+Fingerprint(pubOf(testIssuerKey))+`","typ":"trustfed-passport+jwt"}`, wire, testIssuerKey)
		}, ErrPassportMalformed},
		{"HS256", func(in *VerifyPassportInput) { in.Token = hsToken }, ErrPassportMalformed},
		{"typ JWT", func(in *VerifyPassportInput) { in.Token = jwtTypToken }, ErrPassportMalformed},
		{"no lookup", func(in *VerifyPassportInput) { in.Issuer = nil }, ErrIssuerUnknown},
		{"issuer unknown", func(in *VerifyPassportInput) { in.Issuer = lookupOf() }, ErrIssuerUnknown},
		{"lookup answers for another id", func(in *VerifyPassportInput) {
			in.Issuer = func(string) (PassportIssuer, bool) {
				return PassportIssuer{ID: "other", PublicKey: pubOf(testIssuerKey), MaxLevel: 4}, true
			}
		}, ErrIssuerUnknown},
		{"issuer withdrawn", func(in *VerifyPassportInput) { in.Issuer = lookupOf(withdrawn) }, ErrIssuerWithdrawn},
		{"kid names another key", func(in *VerifyPassportInput) { in.Issuer = lookupOf(otherKeyIssuer) }, ErrPassportSignature},
		{"signed by another key with the right kid", func(in *VerifyPassportInput) {
			in.Token = rawToken(testHeader(testIssuerKey), wire, testOtherKey)
		}, ErrPassportSignature},
		{"payload changed after signing", func(in *VerifyPassportInput) {
			parts := strings.Split(good, ".")
			forged := strings.Split(rawToken(testHeader(testIssuerKey), strings.Replace(wire, `"level":3`, `"level":4`, 1), nil), ".")
			in.Token = parts[0] + "." + forged[1] + "." + parts[2]
		}, ErrPassportSignature},
		{"forged and withdrawn: signature first", func(in *VerifyPassportInput) {
			in.Token = rawToken(testHeader(testIssuerKey), wire, testOtherKey)
			in.Issuer = lookupOf(withdrawn)
		}, ErrPassportSignature},
		{"before nbf", func(in *VerifyPassportInput) { in.Now = testNow.Add(-time.Second) }, ErrPassportNotYetValid},
		{"before iat", func(in *VerifyPassportInput) {
			in.Token = withClaims(func(c *PassportClaims) { c.NotBefore = testNow.Add(-testDay) })
			in.Now = testNow.Add(-time.Hour)
		}, ErrPassportNotYetValid},
		{"at exp", func(in *VerifyPassportInput) { in.Now = testNow.Add(365 * testDay) }, ErrPassportExpired},
		{"after exp", func(in *VerifyPassportInput) { in.Now = testNow.Add(400 * testDay) }, ErrPassportExpired},
		{"expired and withdrawn: withdrawn first", func(in *VerifyPassportInput) {
			in.Now = testNow.Add(400 * testDay)
			in.Issuer = lookupOf(withdrawn)
		}, ErrIssuerWithdrawn},
		{"other organisation", func(in *VerifyPassportInput) { in.OrganizationID = "globex" }, ErrPassportSubject},
		{"other organisation key", func(in *VerifyPassportInput) { in.OrganizationKey = pubOf(testOtherKey) }, ErrPassportSubject},
		{"no organisation key", func(in *VerifyPassportInput) { in.OrganizationKey = nil }, ErrPassportSubject},
		{"level above issuer", func(in *VerifyPassportInput) { in.Issuer = lookupOf(level2) }, ErrIssuerLevel},
		{"serial revoked", func(in *VerifyPassportInput) {
			in.SerialRevoked = func(s string) bool { return s == "0123456789abcdef" }
		}, ErrPassportRevoked},
	}
	sentinels := []error{ErrPassportMalformed, ErrIssuerUnknown, ErrIssuerWithdrawn, ErrPassportSignature,
		ErrPassportNotYetValid, ErrPassportExpired, ErrPassportSubject, ErrIssuerLevel, ErrPassportRevoked}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := testVerifyInput(good)
			tt.edit(&in)
			got, err := VerifyPassport(in)
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, got)
			for _, s := range sentinels {
				if s != tt.want {
					require.NotErrorIs(t, err, s, "only one sentinel per error")
				}
			}
		})
	}
}

func TestTC4VerifyPassportBoundaries(t *testing.T) {
	tok := issueTest(t, testClaims())
	for _, now := range []time.Time{
		testNow, // at nbf
		testNow.Add(365*testDay - time.Nanosecond), // just before exp
	} {
		in := testVerifyInput(tok)
		in.Now = now
		_, err := VerifyPassport(in)
		require.NoError(t, err, now)
	}
	in := testVerifyInput(tok)
	in.SerialRevoked = func(string) bool { return false }
	iss := testIssuer()
	iss.MaxLevel = 3
	in.Issuer = lookupOf(iss)
	_, err := VerifyPassport(in)
	require.NoError(t, err)
}

func TestIssuePassportValidation(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*PassportClaims)
		claim string
	}{
		{"no serial", func(c *PassportClaims) { c.Serial = "" }, "jti"},
		{"long serial", func(c *PassportClaims) { c.Serial = strings.Repeat("a", 129) }, "jti"},
		{"serial with space", func(c *PassportClaims) { c.Serial = "a b" }, "jti"},
		{"serial not ascii", func(c *PassportClaims) { c.Serial = "é" }, "jti"},
		{"issuer id", func(c *PassportClaims) { c.IssuerID = "Assessor" }, "iss"},
		{"issuer id short", func(c *PassportClaims) { c.IssuerID = "a" }, "iss"},
		{"org id", func(c *PassportClaims) { c.OrganizationID = "1acme" }, "sub"},
		{"org key", func(c *PassportClaims) { c.OrganizationKey = c.OrganizationKey[:31] }, "org_key"},
		{"level", func(c *PassportClaims) { c.Level = 5 }, "level"},
		{"no jurisdiction", func(c *PassportClaims) { c.Jurisdiction = "" }, "jurisdiction"},
		{"jurisdiction chars", func(c *PassportClaims) { c.Jurisdiction = "US NY" }, "jurisdiction"},
		{"jurisdiction long", func(c *PassportClaims) { c.Jurisdiction = strings.Repeat("E", 65) }, "jurisdiction"},
		{"digest upper", func(c *PassportClaims) { c.ControlProfileDigest = "sha256:" + strings.Repeat("AB", 32) }, "control_profile_digest"},
		{"digest algorithm", func(c *PassportClaims) { c.ControlProfileDigest = "sha1:" + strings.Repeat("ab", 20) }, "control_profile_digest"},
		{"no iat", func(c *PassportClaims) { c.IssuedAt = time.Time{} }, "iat"},
		{"no nbf", func(c *PassportClaims) { c.NotBefore = time.Time{} }, "nbf"},
		{"no exp", func(c *PassportClaims) { c.ExpiresAt = time.Time{} }, "exp"},
		{"exp before 1970", func(c *PassportClaims) { c.ExpiresAt = time.Unix(-5, 0) }, "exp"},
		{"exp after 9999", func(c *PassportClaims) { c.ExpiresAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "exp"},
		{"exp at nbf", func(c *PassportClaims) { c.ExpiresAt = c.NotBefore }, "exp"},
		{"exp within nbf's second", func(c *PassportClaims) { c.ExpiresAt = c.NotBefore.Add(time.Millisecond) }, "exp"},
		{"exp at iat", func(c *PassportClaims) { c.NotBefore = testNow.Add(-testDay); c.ExpiresAt = testNow }, "exp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClaims()
			tt.edit(&c)
			tok, err := IssuePassport(c, testIssuerKey)
			require.ErrorIs(t, err, ErrPassportMalformed)
			require.Contains(t, err.Error(), `claim "`+tt.claim+`"`)
			require.Empty(t, tok)
		})
	}
	_, err := IssuePassport(testClaims(), testIssuerKey[:32])
	require.ErrorIs(t, err, ErrInvalidKey)
}

func TestParsePassportShape(t *testing.T) {
	good := issueTest(t, testClaims())
	wire := payloadOf(t, good)
	parts := strings.Split(good, ".")
	resign := func(payload string) string { return rawToken(testHeader(testIssuerKey), payload, testIssuerKey) }
	replace := func(old, new string) string {
		require.Contains(t, wire, old)
		return resign(strings.Replace(wire, old, new, 1))
	}
	withoutDigest := strings.Replace(wire, `,"control_profile_digest":"sha256:`+strings.Repeat("ab", 32)+`"`, "", 1)
	require.NotEqual(t, wire, withoutDigest)

	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"issued", good, true},
		{"re-signed identical payload", resign(wire), true},
		{"whitespace in json", resign(strings.ReplaceAll(wire, ",", " ,\n ")), true},
		{"empty digest present", resign(strings.TrimSuffix(withoutDigest, "}") + `,"control_profile_digest":""}`), true},
		{"too long", good + strings.Repeat("A", MaxPassportSize), false},
		{"newline in signature", parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], false},
		{"padding", good + "==", false},
		{"four segments", good + ".AAAA", false},
		{"two segments", parts[0] + "." + parts[1], false},
		{"short signature", parts[0] + "." + parts[1] + "." + parts[2][:40], false},
		{"non-canonical signature base64", parts[0] + "." + parts[1] + "." + parts[2][:85] + flipLowBits(parts[2][85]), false},
		{"header not json", rawToken(`{"alg":`, wire, testIssuerKey), false},
		{"header array", rawToken(`["EdDSA"]`, wire, testIssuerKey), false},
		{"header crit", rawToken(`{"alg":"EdDSA","crit":["exp"],"kid":"`+Fingerprint(pubOf(testIssuerKey))+`","typ":"trustfed-passport+jwt"}`, wire, testIssuerKey), false},
		{"header duplicate alg", rawToken(`{"alg":"none","alg":"EdDSA","kid":"`+Fingerprint(pubOf(testIssuerKey))+`","typ":"trustfed-passport+jwt"}`, wire, testIssuerKey), false},
		{"header no kid", rawToken(`{"alg":"EdDSA","typ":"trustfed-passport+jwt"}`, wire, testIssuerKey), false},
		{"header kid not a fingerprint", rawToken(`{"alg":"EdDSA","kid":"issuer-1","typ":"trustfed-passport+jwt"}`, wire, testIssuerKey), false},
		{"header kid number", rawToken(`{"alg":"EdDSA","kid":7,"typ":"trustfed-passport+jwt"}`, wire, testIssuerKey), false},
		{"payload not an object", resign(`[]`), false},
		{"payload trailing data", resign(wire + `{}`), false},
		{"unknown claim", replace(`{`, `{"aud":"x",`), false},
		{"duplicate claim", replace(`{`, `{"level":4,`), false},
		{"claim in other case", replace(`"level":3`, `"LEVEL":3`), false},
		{"level missing", replace(`"level":3,`, ``), false},
		{"level null", replace(`"level":3`, `"level":null`), false},
		{"level string", replace(`"level":3`, `"level":"3"`), false},
		{"level float", replace(`"level":3`, `"level":3.0`), false},
		{"level 5", replace(`"level":3`, `"level":5`), false},
		{"exp fractional", replace(`"exp":1803902400`, `"exp":1803902400.5`), false},
		{"exp exponent", replace(`"exp":1803902400`, `"exp":1.8039024e9`), false},
		{"exp string", replace(`"exp":1803902400`, `"exp":"1803902400"`), false},
		{"exp huge", replace(`"exp":1803902400`, `"exp":99999999999999999999`), false},
		{"exp missing", replace(`,"exp":1803902400`, ``), false},
		{"org key padded", replace(`","level"`, `=","level"`), false},
		{"jti number", replace(`"jti":"0123456789abcdef"`, `"jti":123`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParsePassportUnverified(tt.token)
			if tt.ok {
				require.NoError(t, err)
				require.NotNil(t, c)
				return
			}
			require.ErrorIs(t, err, ErrPassportMalformed)
			require.Nil(t, c)
			in := testVerifyInput(tt.token)
			_, err = VerifyPassport(in)
			require.ErrorIs(t, err, ErrPassportMalformed)
		})
	}
}

// flipLowBits changes the unused low bits of the last character of an
// unpadded base64url encoding of 64 bytes (86 characters, 4 spare bits).
func flipLowBits(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^1])
}
