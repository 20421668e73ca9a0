package pii_test

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/pii"
)

// message is a random text of filler words with PII values among them; the
// same value may appear twice.
type message struct {
	text   string
	values []string
}

var words = strings.Fields("the agent sent a report about quarterly totals to our partner and waits for an answer before noon")

func randFrom(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.Intn(len(alphabet))]
	}
	return string(b)
}

func randValue(r *rand.Rand) string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	switch r.Intn(8) {
	case 0:
		return randFrom(r, "abcdefghij", 6) + "@" + randFrom(r, "klmnop", 5) + ".com"
	case 1:
		return fmt.Sprintf("%03d-%02d-%04d", 1+r.Intn(665), 1+r.Intn(99), 1+r.Intn(9999))
	case 2:
		return "ghp_" + randFrom(r, alnum, 36)
	case 3:
		return "AKIA" + randFrom(r, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
	case 4:
		return fmt.Sprintf("10.%d.%d.%d", r.Intn(256), r.Intn(256), 1+r.Intn(254))
	case 5:
		return "postgres://app:" + randFrom(r, alnum, 10) + "@db" + randFrom(r, "abc", 3) + ".internal:5432/x"
	case 6:
		return "sk_live_" + randFrom(r, alnum, 24)
	default:
		return fmt.Sprintf("+44 20 %04d %04d", r.Intn(10000), r.Intn(10000))
	}
}

func (message) Generate(r *rand.Rand, size int) reflect.Value {
	var m message
	var b strings.Builder
	for i := 0; i < 3+r.Intn(size+1); i++ {
		if r.Intn(4) == 0 {
			v := randValue(r)
			if len(m.values) > 0 && r.Intn(3) == 0 {
				v = m.values[r.Intn(len(m.values))]
			}
			m.values = append(m.values, v)
			b.WriteString(v)
		} else {
			b.WriteString(words[r.Intn(len(words))])
		}
		b.WriteString(" ")
	}
	m.text = b.String()
	return reflect.ValueOf(m)
}

func all(a pii.Action) pii.Policy {
	p := pii.Policy{}
	for _, t := range pii.Types {
		p[t] = a
	}
	return p
}

var quickCfg = &quick.Config{MaxCount: 500, Rand: rand.New(rand.NewSource(17))}

// TestPropertyHashDeterministicPerKey: under one key the same text gives the
// same output and equal values give equal tokens; under another key every
// token differs.
func TestPropertyHashDeterministicPerKey(t *testing.T) {
	k1, k2 := []byte("key-one-0123456789abcdef"), []byte("key-two-0123456789abcdef")
	prop := func(m message) bool {
		a, err1 := pii.Apply(m.text, all(pii.ActionHash), k1)
		b, err2 := pii.Apply(m.text, all(pii.ActionHash), k1)
		c, err3 := pii.Apply(m.text, all(pii.ActionHash), k2)
		if err1 != nil || err2 != nil || err3 != nil || a.Text != b.Text {
			return false
		}
		tokens := map[string]string{} // value → token under k1
		for _, f := range a.Applied {
			v := f.Value(m.text)
			tok1, tok2 := pii.HashToken(k1, f.Type, v), pii.HashToken(k2, f.Type, v)
			if prev, ok := tokens[v]; ok && prev != tok1 || tok1 == tok2 || !strings.Contains(a.Text, tok1) || !strings.Contains(c.Text, tok2) {
				return false
			}
			tokens[v] = tok1
		}
		return len(a.Applied) == 0 || a.Text != c.Text
	}
	require.NoError(t, quick.Check(prop, quickCfg))
}

// TestPropertyRedactRemovesEveryValue: no detected value survives REDACT.
func TestPropertyRedactRemovesEveryValue(t *testing.T) {
	prop := func(m message) bool {
		res, err := pii.Apply(m.text, all(pii.ActionRedact), nil)
		if err != nil {
			return false
		}
		for _, f := range res.Applied {
			if strings.Contains(res.Text, f.Value(m.text)) {
				return false
			}
		}
		// Every generated value is structured: each must have been found.
		for _, v := range m.values {
			if strings.Contains(res.Text, v) {
				return false
			}
		}
		return true
	}
	require.NoError(t, quick.Check(prop, quickCfg))
}

// TestPropertyBlockNeverReturnsText: with everything BLOCK, a message with a
// finding gives an error and an empty result, and one without passes as is.
func TestPropertyBlockNeverReturnsText(t *testing.T) {
	prop := func(m message) bool {
		res, err := pii.Apply(m.text, all(pii.ActionBlock), nil)
		if len(pii.Scan(m.text)) == 0 {
			return err == nil && res.Text == m.text
		}
		return err != nil && res.Text == "" && res.Applied == nil
	}
	require.NoError(t, quick.Check(prop, quickCfg))
}
