package threat

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"math"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/trustfed/trustfed/client/pii"
)

// Config tunes a RuleGate. The zero value takes every default.
type Config struct {
	// BlockScore is the score at or above which a message is blocked
	// (default 0.5).
	BlockScore float64
	// MaxBodyBytes is the largest body inspected; a larger one is blocked
	// (default 1 MiB).
	MaxBodyBytes int
	// BlobBytes is the length from which an encoded run counts as a blob
	// (default 512).
	BlobBytes int
	// Scanner finds secrets (default: client/pii at its default thresholds).
	Scanner *pii.Scanner
}

// RuleGate is the default rule-based Gate.
type RuleGate struct {
	cfg Config
}

var _ Gate = (*RuleGate)(nil)

// NewRuleGate returns a rule gate; zero fields of cfg take their defaults.
func NewRuleGate(cfg Config) *RuleGate {
	if cfg.BlockScore <= 0 || cfg.BlockScore > 1 || math.IsNaN(cfg.BlockScore) {
		cfg.BlockScore = 0.5
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.BlobBytes <= 0 {
		cfg.BlobBytes = 512
	}
	if cfg.Scanner == nil {
		cfg.Scanner = pii.NewScanner(pii.DefaultThresholds())
	}
	return &RuleGate{cfg: cfg}
}

// secretTypes are the PII types that are credentials: leaving, they are a
// leak whatever the PII policy says about them.
var secretTypes = map[pii.Type]bool{pii.APIKey: true, pii.AWSKey: true, pii.GitHubToken: true, pii.JWT: true,
	pii.PrivateKey: true, pii.Password: true, pii.DatabaseURL: true}

// Inspect runs every rule on m and blocks at the configured score. It
// blocks a message it cannot inspect: an unknown direction, a body over
// MaxBodyBytes, or a done ctx.
func (g *RuleGate) Inspect(ctx context.Context, m Message) Verdict {
	var rs []Reason
	switch {
	case m.Direction != Outbound && m.Direction != Inbound:
		rs = append(rs, Reason{Code: ReasonBadDirection, Detail: fmt.Sprintf("direction %d", m.Direction), Weight: 1})
	case len(m.Body) > g.cfg.MaxBodyBytes:
		rs = append(rs, Reason{Code: ReasonTooLarge, Detail: fmt.Sprintf("%d bytes > %d", len(m.Body), g.cfg.MaxBodyBytes), Weight: 1})
	default:
		for _, step := range []func(Message) []Reason{g.phrases, g.invisibles, g.encoded, g.secrets, g.urls} {
			if err := ctx.Err(); err != nil {
				rs = append(rs, Reason{Code: ReasonInspectionInterrupted, Detail: err.Error(), Weight: 1})
				break
			}
			rs = append(rs, step(m)...)
		}
	}
	s := score(rs)
	return Verdict{Allow: s < g.cfg.BlockScore, Score: s, Reasons: capReasons(rs, maxReasonsPerCode)}
}

// maxReasonsPerCode bounds a verdict's reasons of one code: a body that
// repeats an attack a thousand times gets the same verdict (its score is
// computed from every reason) without a thousand reasons.
const maxReasonsPerCode = 16

func capReasons(rs []Reason, most int) []Reason {
	counts := map[ReasonCode]int{}
	out := rs[:0]
	for _, r := range rs {
		if counts[r.Code]++; counts[r.Code] <= most {
			out = append(out, r)
		}
	}
	return out
}

func (g *RuleGate) phrases(m Message) []Reason {
	rs := matchPhrases(normalize(m.Body), "", 0, "")
	// Role prefixes at the start of a line ("system:") are kept out of
	// normalize, which joins lines.
	for _, line := range strings.Split(strings.ToLower(m.Body), "\n") {
		if l := strings.TrimLeft(line, " \t>#*"); strings.HasPrefix(l, "system:") || strings.HasPrefix(l, "system prompt:") ||
			strings.HasPrefix(l, "assistant:") || strings.HasPrefix(l, "[system]") {
			rs = append(rs, Reason{Code: ReasonRoleOverride, Detail: "role prefix at line start", Weight: 0.35})
			break
		}
	}
	return rs
}

// invisibles flags bidirectional controls, zero-width characters (a
// zero-width joiner inside an emoji sequence is fine) and text hidden in
// Unicode tag characters.
func (g *RuleGate) invisibles(m Message) []Reason {
	var rs []Reason
	bidi, zw, tags, first, firstEnd := 0, 0, 0, -1, -1
	prev := rune(0)
	for i, r := range m.Body {
		switch {
		case bidiControl(r):
			bidi++
		case r >= 0xE0000 && r <= 0xE007F:
			tags++
		case r == 0x200D && (prev >= 0x2000 || prev == 0xFE0F):
			prev = r // an emoji ZWJ sequence
			continue
		case invisible(r) && r != 0x200E && r != 0x200F && !(r == 0xFEFF && i == 0):
			zw++
		default:
			prev = r
			continue
		}
		if first < 0 {
			first, firstEnd = i, i+utf8.RuneLen(r)
		}
		prev = r
	}
	if bidi > 0 {
		rs = append(rs, Reason{Code: ReasonInvisibleCharacters, Detail: fmt.Sprintf("%d bidirectional controls", bidi), Start: first, End: firstEnd, Weight: 0.6})
	}
	if zw > 0 {
		w := 0.2
		if zw >= 3 {
			w = 0.5
		}
		rs = append(rs, Reason{Code: ReasonInvisibleCharacters, Detail: fmt.Sprintf("%d zero-width characters", zw), Start: first, End: firstEnd, Weight: w})
	}
	if tags > 0 {
		hidden := tagText(m.Body)
		if found := matchPhrases(normalize(hidden), ReasonHiddenText, 0.9, "unicode tags"); len(found) > 0 {
			rs = append(rs, found...)
		} else {
			rs = append(rs, Reason{Code: ReasonHiddenText, Detail: fmt.Sprintf("%d unicode tag characters", tags), Weight: 0.6})
		}
	}
	return rs
}

func isB64Byte(b byte) bool {
	return 'A' <= b && b <= 'Z' || 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '+' || b == '/' || b == '-' || b == '_'
}

// encoded decodes base64 runs: an injection phrase inside is an encoded
// injection; a long run (or a long hex run) leaving is a blob.
func (g *RuleGate) encoded(m Message) []Reason {
	var rs []Reason
	t := m.Body
	for i := 0; i < len(t); {
		if !isB64Byte(t[i]) {
			i++
			continue
		}
		j := i
		for j < len(t) && (isB64Byte(t[j]) || (t[j] == '\n' || t[j] == '\r') && j+1 < len(t) && isB64Byte(t[j+1]) && j-i >= 60) {
			j++
		}
		e := j
		for e < len(t) && e-j < 2 && t[e] == '=' {
			e++
		}
		run := t[i:e]
		i = e
		if len(run) < 24 {
			continue
		}
		if dec, err := hex.DecodeString(run); err == nil && printable(string(dec)) {
			rs = append(rs, matchPhrases(normalize(string(dec)), ReasonEncodedInjection, 0.85, "hex")...)
		} else if dec, ok := decodeB64(run); ok && printable(dec) {
			rs = append(rs, matchPhrases(normalize(dec), ReasonEncodedInjection, 0.85, "base64")...)
		}
		if len(run) >= g.cfg.BlobBytes && !strings.Contains(t[max(0, i-len(run)-64):i-len(run)], "PRIVATE KEY") {
			w := 0.6
			if m.Direction == Inbound {
				w = 0.2
			}
			kind := "base64"
			if _, err := hex.DecodeString(run); err == nil {
				kind = "hex"
			}
			rs = append(rs, Reason{Code: ReasonEncodedBlob, Detail: fmt.Sprintf("%d-byte %s run", len(run), kind), Start: i - len(run), End: i, Weight: w})
		}
	}
	return rs
}

func decodeB64(s string) (string, bool) {
	s = strings.NewReplacer("\n", "", "\r", "").Replace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return string(b), true
		}
	}
	return "", false
}

// printable reports whether s is mostly text: valid UTF-8 with at least
// 85% printable characters.
func printable(s string) bool {
	if !utf8.ValidString(s) || len(s) == 0 {
		return false
	}
	n, ok := 0, 0
	for _, r := range s {
		n++
		if r == '\n' || r == '\t' || r == '\r' || (r >= 0x20 && r != 0x7f) {
			ok++
		}
	}
	return float64(ok) >= 0.85*float64(n)
}

// secrets flags credentials found by client/pii: leaving, they are a leak;
// arriving, someone else's leak worth a low weight.
func (g *RuleGate) secrets(m Message) []Reason {
	var rs []Reason
	for _, f := range g.cfg.Scanner.Scan(m.Body) {
		if !secretTypes[f.Type] {
			continue
		}
		w := 0.9
		if m.Direction == Inbound {
			w = 0.3
		}
		rs = append(rs, Reason{Code: ReasonSecretLeak, Detail: pii.TypeName(f.Type), Start: f.Start, End: f.End, Weight: w})
	}
	return rs
}

// urls flags URLs that carry data: a long encoded-looking query value or
// path segment, personal data in the query, or a markdown image with a
// query (rendering it sends the query to its host).
func (g *RuleGate) urls(m Message) []Reason {
	var rs []Reason
	t := m.Body
	for off := 0; off < len(t); {
		k := strings.Index(t[off:], "http")
		if k < 0 {
			break
		}
		s := off + k
		e := s
		for e < len(t) && t[e] > ' ' && t[e] < 0x7f && !strings.ContainsRune("\"'<>`)]", rune(t[e])) {
			e++
		}
		off = max(e, s+4)
		raw := strings.TrimRight(t[s:e], ".,;:!?")
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			continue
		}
		image := s >= 2 && t[s-1] == '(' && strings.LastIndex(t[max(0, s-80):s], "![") >= 0
		if r, ok := g.urlCarriesData(u, image); ok {
			r.Start, r.End = s, s+len(raw)
			rs = append(rs, r)
		}
	}
	return rs
}

func (g *RuleGate) urlCarriesData(u *url.URL, image bool) (Reason, bool) {
	for _, label := range strings.Split(u.Hostname(), ".") {
		if len(label) >= 24 && looksEncoded(label) {
			return Reason{Code: ReasonURLExfiltration, Detail: fmt.Sprintf("%d-byte encoded label in host name %s", len(label), u.Hostname()), Weight: 0.7}, true
		}
	}
	parts := strings.Split(strings.Trim(u.EscapedPath(), "/"), "/")
	for _, vs := range u.Query() {
		parts = append(parts, vs...)
	}
	for _, p := range parts {
		if len(p) >= 48 && looksEncoded(p) {
			return Reason{Code: ReasonURLExfiltration, Detail: fmt.Sprintf("%d-byte encoded value in URL to %s", len(p), u.Host), Weight: 0.7}, true
		}
	}
	if fs := g.cfg.Scanner.Scan(u.RawQuery); len(fs) > 0 {
		return Reason{Code: ReasonURLExfiltration, Detail: pii.TypeName(fs[0].Type) + " in URL query to " + u.Host, Weight: 0.75}, true
	}
	if image && len(u.RawQuery) >= 16 {
		return Reason{Code: ReasonURLExfiltration, Detail: "markdown image with a query to " + u.Host, Weight: 0.6}, true
	}
	return Reason{}, false
}

// looksEncoded: base64/hex-like (no spaces, few separators) and random
// (entropy of at least 3.5 bits per byte).
func looksEncoded(s string) bool {
	var counts [256]int
	other := 0
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
		if !isB64Byte(s[i]) && s[i] != '=' && s[i] != '%' {
			other++
		}
	}
	if other > len(s)/20 {
		return false
	}
	h := 0.0
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / float64(len(s))
			h -= p * math.Log2(p)
		}
	}
	return h >= 3.5
}
