package attestation

import (
	"bytes"
	"crypto/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNewToken(t *testing.T) {
	id, secret, err := NewToken(rand.Reader)
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`^[0-9a-f]{12}$`), id)
	require.Regexp(t, regexp.MustCompile(`^tf_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$`), secret)
	require.Len(t, secret, TokenLen)

	got, err := ParseToken(secret)
	require.NoError(t, err)
	require.Equal(t, id, got)

	id2, secret2, err := NewToken(rand.Reader)
	require.NoError(t, err)
	require.NotEqual(t, id, id2)
	require.NotEqual(t, secret, secret2)

	_, _, err = NewToken(bytes.NewReader([]byte{1, 2, 3}))
	require.Error(t, err)
	_, _, err = NewToken(nil)
	require.ErrorIs(t, err, ErrInvalidToken)
}

func TestNewTokenDeterministic(t *testing.T) {
	src := bytes.Repeat([]byte{0xff}, 64)
	id, secret, err := NewToken(bytes.NewReader(src))
	require.NoError(t, err)
	require.Equal(t, "ffffffffffff", id)
	require.Equal(t, "tf_ffffffffffff_"+strings.Repeat("_", 42)+"8", secret)
}

func TestParseTokenErrors(t *testing.T) {
	valid := "tf_0123456789ab_" + strings.Repeat("A", 43)
	_, err := ParseToken(valid)
	require.NoError(t, err)

	tests := []struct {
		name   string
		secret string
	}{
		{"empty", ""},
		{"short", valid[:len(valid)-1]},
		{"long", valid + "A"},
		{"bad prefix", "tg" + valid[2:]},
		{"uppercase id", "tf_0123456789AB_" + strings.Repeat("A", 43)},
		{"non-hex id", "tf_0123456789ag_" + strings.Repeat("A", 43)},
		{"missing separator", "tf_0123456789ab-" + strings.Repeat("A", 43)},
		{"padding", "tf_0123456789ab_" + strings.Repeat("A", 42) + "="},
		{"std base64 char", "tf_0123456789ab_" + strings.Repeat("A", 42) + "+"},
		{"non-canonical last char", "tf_0123456789ab_" + strings.Repeat("A", 42) + "B"},
		{"whitespace", "tf_0123456789ab_" + strings.Repeat("A", 42) + " "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseToken(tt.secret)
			require.ErrorIs(t, err, ErrInvalidToken)
		})
	}
}

func TestTokenHash(t *testing.T) {
	_, secret, err := NewToken(rand.Reader)
	require.NoError(t, err)
	h := TokenHash(secret)
	require.Equal(t, h, TokenHash(secret))
	require.NotEqual(t, h, TokenHash(secret+"x"))
	require.True(t, TokenMatches(secret, h))
	require.False(t, TokenMatches(secret[:len(secret)-1], h))
}
