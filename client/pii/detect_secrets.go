package pii

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// detectPrivateKeys finds PEM private-key blocks, from "-----BEGIN ...
// PRIVATE KEY-----" to the matching END line (or, without one, to the end
// of the base64 body).
func detectPrivateKeys(c *scanCtx) {
	const begin, endLine = "-----BEGIN ", "-----END "
	var ends []int // every END line, found once
	for off := 0; ; {
		k := strings.Index(c.text[off:], endLine)
		if k < 0 {
			break
		}
		ends = append(ends, off+k)
		off += k + len(endLine)
	}
	for off := 0; ; {
		k := strings.Index(c.text[off:], begin)
		if k < 0 {
			return
		}
		i := off + k
		off = i + len(begin)
		detectPrivateKeyAt(c, i, ends)
	}
}

// maxPEM bounds a block without an END line: the longest private keys
// (RSA 16384, armored PGP) fit.
const maxPEM = 32 << 10

// detectPrivateKeyAt looks at the BEGIN line at i; ends are the positions
// of every END line. The block ends at the first END line after it, which
// must carry the same label.
func detectPrivateKeyAt(c *scanCtx, i int, ends []int) {
	const begin = "-----BEGIN "
	t := c.text
	h := i + len(begin)
	k := strings.Index(t[h:min(len(t), h+64)], "-----")
	if k < 0 {
		return
	}
	label := t[h : h+k]
	if !strings.HasSuffix(label, "PRIVATE KEY") && label != "PGP PRIVATE KEY BLOCK" {
		return
	}
	bodyStart := h + k + 5
	if n, _ := slices.BinarySearch(ends, bodyStart); n < len(ends) {
		e := ends[n]
		if end := "-----END " + label + "-----"; strings.HasPrefix(t[e:], end) {
			c.add(PrivateKey, i, e+len(end), 0.99)
			return
		}
	}
	// No END line: the base64 body (with legacy "Proc-Type:"/"DEK-Info:"
	// headers and JSON-escaped line breaks), up to the next "-----".
	j, limit := bodyStart, min(len(t), bodyStart+maxPEM)
	for j < limit {
		b := t[j]
		if b == '-' && strings.HasPrefix(t[j:], "-----") {
			break
		}
		if !(isB64(b) || b == '=' || b == '\n' || b == '\r' || b == ' ' || b == '\\' || b == ':' || b == '-' || b == ',') {
			break
		}
		j++
	}
	if j-bodyStart >= 64 {
		c.add(PrivateKey, i, j, 0.9)
	}
}

// detectJWTs finds three base64url segments whose first decodes to a JSON
// object naming an "alg".
func detectJWTs(c *scanCtx) {
	c.atRuns(jwtPrefix, func(i, _ int) {
		if !boundaryBefore(c.text, i, isB64URL) {
			return
		}
		hEnd := runEnd(c.text, i, isB64URL)
		if hEnd >= len(c.text) || c.text[hEnd] != '.' {
			return
		}
		pEnd := runEnd(c.text, hEnd+1, isB64URL)
		if pEnd-hEnd-1 < 2 || pEnd >= len(c.text) || c.text[pEnd] != '.' {
			return
		}
		sEnd := runEnd(c.text, pEnd+1, isB64URL)
		var buf [512]byte
		hdr, ok := decodeJSONSegment(buf[:], c.text[i:hEnd])
		if !ok || !hasAlg(hdr) {
			return
		}
		conf := 0.9
		if _, ok := decodeJSONSegment(buf[:], c.text[hEnd+1:pEnd]); ok {
			conf = 0.99
		}
		c.add(JWT, i, sEnd, conf)
	})
}

// decodeJSONSegment decodes a base64url JWT segment into buf and reports
// whether it is a JSON object (a segment too long for buf is not one we
// need: headers are short, and a long payload only lowers the confidence).
func decodeJSONSegment(buf []byte, seg string) ([]byte, bool) {
	if base64.RawURLEncoding.DecodedLen(len(seg)) > len(buf) {
		return nil, false
	}
	n, err := base64.RawURLEncoding.Decode(buf, []byte(seg))
	if err != nil || n == 0 || buf[0] != '{' || !json.Valid(buf[:n]) {
		return nil, false
	}
	return buf[:n], true
}

// hasAlg reports whether a JSON object (valid, from decodeJSONSegment) has a
// top-level-looking "alg" member: the key followed by a colon.
func hasAlg(obj []byte) bool {
	for off := 0; ; {
		k := bytes.Index(obj[off:], []byte(`"alg"`))
		if k < 0 {
			return false
		}
		off += k + 5
		j := off
		for j < len(obj) && (obj[j] == ' ' || obj[j] == '\t' || obj[j] == '\n' || obj[j] == '\r') {
			j++
		}
		if j < len(obj) && obj[j] == ':' {
			return true
		}
	}
}

// detectGitHubTokens finds GitHub tokens by their documented prefixes.
func detectGitHubTokens(c *scanCtx) {
	isTok := func(b byte) bool { return isAlnum(b) || b == '_' }
	c.atRuns(ghPrefixes, func(i, _ int) {
		if !boundaryBefore(c.text, i, isTok) {
			return
		}
		j := runEnd(c.text, i+4, isAlnum)
		if !boundaryAfter(c.text, j, isTok) {
			return
		}
		switch n := j - i - 4; {
		case n == 36:
			c.add(GitHubToken, i, j, 0.99)
		case n >= 30 && n <= 251:
			c.add(GitHubToken, i, j, 0.85)
		}
	})
	c.atRuns(ghPATPrefix, func(i, _ int) {
		if !boundaryBefore(c.text, i, isTok) {
			return
		}
		j := runEnd(c.text, i+11, isTok)
		switch n := j - i - 11; {
		case n == 82:
			c.add(GitHubToken, i, j, 0.99)
		case n >= 22:
			c.add(GitHubToken, i, j, 0.85)
		}
	})
}

// awsKeyIDPrefixes are the four-letter prefixes of AWS access key ids.
var awsKeyIDPrefixes = []string{"AKIA", "ASIA", "AGPA", "AIDA", "AROA", "AIPA", "ANPA", "ANVA", "ASCA", "ABIA", "ACCA"}

// detectAWSKeys finds access key ids (a prefix and 16 upper-case letters or
// digits) and secret access keys (40 base64 characters after a keyword
// naming one).
func detectAWSKeys(c *scanCtx) {
	isID := func(b byte) bool { return isUpper(b) || isDigit(b) }
	c.atRuns(awsKeyIDSet, func(i, _ int) {
		j := runEnd(c.text, i, isID)
		if j-i == 20 && boundaryAfter(c.text, j, isAlnum) {
			c.add(AWSKey, i, j, 0.98)
		}
	})
	c.atRuns(awsSecretSet, func(i, k int) {
		s := c.valueAfter(i + len(awsSecretWords[k]))
		if s < 0 {
			return
		}
		e := runEnd(c.text, s, isB64)
		if e-s == 40 && boundaryAfter(c.text, e, func(b byte) bool { return isB64(b) || b == '=' }) && classes(c.text[s:e]) >= 3 {
			c.add(AWSKey, s, e, 0.95)
		}
	})
}

var awsSecretWords = []string{"aws_secret", "secret_access_key", "secretaccesskey", "aws secret", "secret"}

// dbSchemes are the URL schemes of databases and brokers.
var dbSchemes = map[string]bool{
	"postgres": true, "postgresql": true, "mysql": true, "mariadb": true, "mongodb": true,
	"mongodb+srv": true, "redis": true, "rediss": true, "amqp": true, "amqps": true, "mssql": true,
	"sqlserver": true, "oracle": true, "cockroachdb": true, "clickhouse": true, "cassandra": true,
	"couchdb": true, "neo4j": true, "memcached": true, "snowflake": true, "db2": true,
}

func isURLByte(b byte) bool {
	return b > ' ' && b < 0x7f && b != '"' && b != '\'' && b != '<' && b != '>' && b != '`' && b != '\\'
}

// detectDatabaseURLs finds URLs whose scheme is a database's, with or
// without a "jdbc:" prefix. Credentials in the URL raise the confidence.
func detectDatabaseURLs(c *scanCtx) {
	for off := 0; ; {
		k := strings.Index(c.text[off:], "://")
		if k < 0 {
			return
		}
		off = max(off+k+3, detectDatabaseURLAt(c, off+k))
	}
}

// maxURL bounds a database URL, so that "postgres://postgres://…" costs
// this much per scheme, not the rest of the text.
const maxURL = 4096

// detectDatabaseURLAt looks at the "://" at i and returns where the URL
// it scanned ends (i+3 when it scanned none): a "://" before that is part
// of the same URL.
func detectDatabaseURLAt(c *scanCtx, i int) int {
	isScheme := func(b byte) bool { return isAlnum(b) || b == '+' || b == ':' || b == '.' || b == '-' }
	s := i
	for s > 0 && isScheme(c.text[s-1]) {
		s--
	}
	scheme := strings.TrimPrefix(strings.ToLower(c.text[s:i]), "jdbc:")
	if !dbSchemes[scheme] {
		return i + 3
	}
	e := runEnd(c.text[:min(len(c.text), i+maxURL)], i+3, isURLByte)
	for e > i+3 && strings.IndexByte(".,;:)]}!?", c.text[e-1]) >= 0 {
		e--
	}
	if e-i-3 < 3 {
		return e
	}
	conf := 0.85
	if u, err := url.Parse(c.text[i-len(scheme) : e]); err == nil && u.Host != "" {
		conf = 0.92
		if _, ok := u.User.Password(); ok {
			conf = 0.99
		} else if u.User != nil {
			conf = 0.96
		}
	} else if strings.IndexByte(c.text[i+3:e], '@') > 0 {
		conf = 0.97
	}
	c.add(DatabaseURL, s, e, conf)
	return e
}

// apiKeyPrefixes are documented prefixes of well-known services' keys, with
// the shortest body that follows them.
var apiKeyPrefixes = []struct {
	p    string
	body int
}{
	{"sk_live_", 16}, {"sk_test_", 16}, {"rk_live_", 16}, {"pk_live_", 16}, {"sk-proj-", 32}, {"sk-ant-", 32},
	{"sk-", 32}, {"xoxb-", 20}, {"xoxp-", 20}, {"xoxa-", 20}, {"AIza", 35}, {"glpat-", 20}, {"npm_", 36},
	{"SG.", 60}, {"hf_", 30},
}

var apiKeyPrefixNames = func() []string {
	n := make([]string, len(apiKeyPrefixes))
	for i, k := range apiKeyPrefixes {
		n[i] = k.p
	}
	return n
}()

// apiKeyWords name a secret token that follows them.
var apiKeyWords = []string{"api_key", "apikey", "api-key", "api key", "access_token", "auth_token",
	"client_secret", "secret_key", "x-api-key", "bearer ", "token"}

// detectAPIKeys finds keys by a known prefix, keys named by a keyword before
// them, and (at low confidence) any long high-entropy token.
func detectAPIKeys(c *scanCtx) {
	c.atRuns(apiKeyPrefixSet, func(i, n int) {
		k := apiKeyPrefixes[n]
		if !boundaryBefore(c.text, i, isB64URL) {
			return
		}
		j := runEnd(c.text, i+len(k.p), func(b byte) bool { return isB64URL(b) || b == '.' })
		if j-i-len(k.p) >= k.body {
			c.add(APIKey, i, j, 0.95)
		}
	})
	c.atRuns(apiKeyWordSet, func(i, n int) {
		k := apiKeyWords[n]
		s := c.valueAfter(i + len(k))
		if s < 0 || !boundaryBefore(c.text, s, isTokenByte) {
			return
		}
		e := runEnd(c.text, s, isTokenByte)
		for n := 0; n < 2 && e < len(c.text) && c.text[e] == '='; n++ {
			e++ // base64 padding
		}
		for e > s && (c.text[e-1] == '.' || c.text[e-1] == ',') {
			e--
		}
		v := c.text[s:e]
		if len(v) >= 16 && entropy(v) >= 3.0 && classes(v) >= 2 && !isUUID(v) {
			c.add(APIKey, s, e, 0.9)
		}
	})
	// Context-free: long tokens that look random and are not a hex digest or a UUID.
	for k := 0; k < len(c.runs); k++ {
		i, j := c.runs[k].s, c.runs[k].e
		for k+1 < len(c.runs) && c.runs[k+1].s == j+1 && (c.text[j] == '-' || c.text[j] == '_') {
			k++
			j = c.runs[k].e
		}
		if !boundaryBefore(c.text, i, isB64URL) || !boundaryAfter(c.text, j, isB64URL) {
			continue
		}
		if v := c.text[i:j]; len(v) >= 32 && !allIn(v, isHex) && !isUUID(v) && classes(v) >= 3 && entropy(v) >= 4.0 {
			c.add(APIKey, i, j, 0.55)
		}
	}
}

// isUUID reports the 8-4-4-4-12 hex shape.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// passwordWords name a password that follows them.
var passwordWords = []string{"password", "passwd", "passphrase", "pwd", "pass"}

// notPasswords are words that follow "password is" without being one.
var notPasswords = map[string]bool{
	"required": true, "incorrect": true, "invalid": true, "null": true, "none": true, "n/a": true,
	"hidden": true, "correct": true, "wrong": true, "expired": true, "missing": true, "empty": true,
	"weak": true, "strong": true, "valid": true, "reset": true, "changed": true, "set": true, "unset": true,
	"redacted": true, "[redacted]": true, "<redacted>": true, "too": true, "not": true, "the": true,
	"still": true, "being": true, "case-sensitive": true, "stored": true, "protected": true,
}

// detectPasswords finds the value after "password:", "password=" or
// "password is".
func detectPasswords(c *scanCtx) {
	next := 0 // a cue inside the previous value ("password:password:…") is part of it
	c.atWords(passwordWords, func(i, n int) {
		if i < next {
			return
		}
		k := passwordWords[n]
		t := c.text
		p := runEnd(t[:min(len(t), i+len(k)+maxKeyTail)], i+len(k), func(b byte) bool { return isAlnum(b) || b == '_' || b == '-' })
		p = runEnd(t, p, func(b byte) bool { return b == ' ' || b == '"' || b == '\'' })
		conf := 0.85
		switch {
		case p < len(t) && (t[p] == ':' || t[p] == '='):
			p++
		case hasPrefixFold(t[p:], "is "), hasPrefixFold(t[p:], "was "):
			p += strings.IndexByte(t[p:], ' ') + 1
			conf = 0.7
		default:
			return
		}
		p = runEnd(c.text, p, func(b byte) bool { return b == ' ' || b == '\t' })
		s, e := p, 0
		if p < len(c.text) && (c.text[p] == '"' || c.text[p] == '\'') {
			q := strings.IndexByte(c.text[p+1:min(len(c.text), p+130)], c.text[p])
			if q < 0 {
				return
			}
			s, e = p+1, p+1+q
		} else {
			e = runEnd(c.text[:min(len(c.text), p+129)], p, func(b byte) bool { return b > ' ' && b < 0x7f && b != '"' && b != '\'' })
			next = e
			for e > s && strings.IndexByte(".,;)", c.text[e-1]) >= 0 {
				e--
			}
		}
		v := c.text[s:e]
		if len(v) < 4 || len(v) > 128 || notPasswords[strings.ToLower(v)] || allIn(v, func(b byte) bool { return b == '*' || b == 'x' || b == 'X' }) {
			return
		}
		if classes(v) >= 3 {
			conf += 0.1
		} else if classes(v) == 1 && conf < 0.8 {
			conf = 0.5 // "password is banana": a word, not clearly a password
		}
		c.add(Password, s, e, conf)
	})
}

var (
	jwtPrefix       = newPrefixSet("eyJ")
	ghPrefixes      = newPrefixSet("ghp_", "gho_", "ghs_", "ghu_", "ghr_")
	ghPATPrefix     = newPrefixSet("github_pat_")
	awsKeyIDSet     = newPrefixSet(awsKeyIDPrefixes...)
	awsSecretSet    = newFoldSet(awsSecretWords...)
	apiKeyPrefixSet = newPrefixSet(apiKeyPrefixNames...)
	apiKeyWordSet   = newFoldSet(apiKeyWords...)
)
