package pii

import (
	"math"
	"strings"
)

func isDigit(b byte) bool { return '0' <= b && b <= '9' }
func isUpper(b byte) bool { return 'A' <= b && b <= 'Z' }
func isLower(b byte) bool { return 'a' <= b && b <= 'z' }
func isAlpha(b byte) bool { return isUpper(b) || isLower(b) }
func isAlnum(b byte) bool { return isAlpha(b) || isDigit(b) }
func isHex(b byte) bool   { return isDigit(b) || ('a' <= b && b <= 'f') || ('A' <= b && b <= 'F') }

// isB64URL is the base64url alphabet (JWT segments, most API tokens).
func isB64URL(b byte) bool { return isAlnum(b) || b == '-' || b == '_' }

// isB64 is the standard base64 alphabet without padding.
func isB64(b byte) bool { return isAlnum(b) || b == '+' || b == '/' }

// isTokenByte is what a secret value may be made of ('=' only as base64
// padding at its end, which callers add).
func isTokenByte(b byte) bool {
	return isAlnum(b) || b == '-' || b == '_' || b == '.' || b == '+' || b == '/'
}

// wordBoundaryBefore reports whether text[i] starts a token: nothing
// alphanumeric (or in extra) right before it.
func boundaryBefore(text string, i int, in func(byte) bool) bool {
	return i == 0 || !in(text[i-1])
}

func boundaryAfter(text string, j int, in func(byte) bool) bool {
	return j >= len(text) || !in(text[j])
}

// runEnd is the end of the run of bytes in class starting at i.
func runEnd(text string, i int, in func(byte) bool) int {
	for i < len(text) && in(text[i]) {
		i++
	}
	return i
}

// entropy is the Shannon entropy of s in bits per byte:
// log2(n) − Σ c·log2(c) / n over the byte counts c.
func entropy(s string) float64 {
	if s == "" {
		return 0
	}
	var counts [256]uint32
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	var sum float64
	for i := 0; i < len(s); i++ {
		if c := counts[s[i]]; c > 0 {
			sum += cLog2c(c)
			counts[s[i]] = 0 // each distinct byte once
		}
	}
	n := uint32(len(s))
	return (cLog2c(n) - sum) / float64(n)
}

// cLog2c is c·log2(c), from a table for small c.
func cLog2c(c uint32) float64 {
	if int(c) < len(cLog2cTable) {
		return cLog2cTable[c]
	}
	return float64(c) * math.Log2(float64(c))
}

var cLog2cTable = func() (t [257]float64) {
	for c := 1; c < len(t); c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()

// classes counts the character classes in s: lower, upper, digit, other.
func classes(s string) int {
	var lo, up, di, ot int
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case isLower(b):
			lo = 1
		case isUpper(b):
			up = 1
		case isDigit(b):
			di = 1
		default:
			ot = 1
		}
	}
	return lo + up + di + ot
}

// allIn reports whether every byte of s is in class.
func allIn(s string, in func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !in(s[i]) {
			return false
		}
	}
	return true
}

// contextBefore reports whether any of words (lower-case ASCII) occurs, in
// any case, within window bytes before i.
func (c *scanCtx) contextBefore(i, window int, words ...string) bool {
	w := c.text[max(0, i-window):i]
	for _, k := range words {
		for j := 0; j+len(k) <= len(w); j++ {
			if lowerByte(w[j]) == k[0] && hasPrefixFold(w[j:], k) {
				return true
			}
		}
	}
	return false
}

func lowerByte(b byte) byte {
	if isUpper(b) {
		return b + 'a' - 'A'
	}
	return b
}

// hasPrefixFold reports whether s starts with p (lower-case ASCII) in any case.
func hasPrefixFold(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	for i := 0; i < len(p); i++ {
		if lowerByte(s[i]) != p[i] {
			return false
		}
	}
	return true
}

// prefixSet is a list of prefixes some detector looks for where a token
// starts; a folding set's prefixes are lower-case ASCII and match in any
// case. Every set is registered in one table indexed by first byte, so a
// scan matches all of them in one pass over the runs (see hits).
type prefixSet struct {
	id   int
	list []string
	fold bool
}

// prefixRef is one prefix of one set.
type prefixRef struct{ set, k int }

var (
	prefixSets []*prefixSet
	byFirst    [256][]prefixRef
)

func newPrefixSet(list ...string) *prefixSet { return registerSet(list, false) }

// newFoldSet is a prefix set that matches in any case.
func newFoldSet(list ...string) *prefixSet { return registerSet(list, true) }

func registerSet(list []string, fold bool) *prefixSet {
	ps := &prefixSet{id: len(prefixSets), list: list, fold: fold}
	prefixSets = append(prefixSets, ps)
	for k, p := range list {
		byFirst[p[0]] = append(byFirst[p[0]], prefixRef{ps.id, k})
		if fold && isLower(p[0]) {
			u := p[0] - ('a' - 'A')
			byFirst[u] = append(byFirst[u], prefixRef{ps.id, k})
		}
	}
	return ps
}

// hit is a run start where prefix k of set begins.
type hit struct{ i, set, k int }

// computeHits matches every registered prefix at every run start, once per
// scan.
func (c *scanCtx) computeHits() {
	c.hits = c.hits[:0]
	for _, r := range c.runs {
		rest := c.text[r.s:]
		for _, ref := range byFirst[rest[0]] {
			ps := prefixSets[ref.set]
			p := ps.list[ref.k]
			if ps.fold && hasPrefixFold(rest, p) || !ps.fold && strings.HasPrefix(rest, p) {
				c.hits = append(c.hits, hit{r.s, ref.set, ref.k})
			}
		}
	}
	c.hitsDone = true
}

// atRuns calls fn(i, k) for every run start i where the text continues
// with ps.list[k].
func (c *scanCtx) atRuns(ps *prefixSet, fn func(i, k int)) {
	if !c.hitsDone {
		c.computeHits()
	}
	for _, h := range c.hits {
		if h.set == ps.id {
			fn(h.i, h.k)
		}
	}
}

// atWords calls fn(i, k) for every run that is words[k] (lower-case
// ASCII) in any case.
func (c *scanCtx) atWords(words []string, fn func(i, k int)) {
	for _, r := range c.runs {
		w := c.text[r.s:r.e]
		for k, p := range words {
			if len(w) == len(p) && hasPrefixFold(w, p) {
				fn(r.s, k)
			}
		}
	}
}

// maxKeyTail bounds the rest of a key's identifier after its cue word
// ("_access_key_id"), so that "token-token-token…" costs this much per cue.
const maxKeyTail = 32

// valueAfter is where the value named by a keyword ending at pos starts:
// past the rest of the key's identifier ("api_key_prod"), separators
// (": ", "=", quotes) and an optional "is". It returns -1 when something
// else follows.
func (c *scanCtx) valueAfter(pos int) int {
	t := c.text
	p := runEnd(t[:min(len(t), pos+maxKeyTail)], pos, func(b byte) bool { return isAlnum(b) || b == '_' || b == '-' })
	sep := func(b byte) bool { return b == ' ' || b == '\t' || b == ':' || b == '=' || b == '"' || b == '\'' }
	q := runEnd(t, p, sep)
	if hasPrefixFold(t[q:], "is ") {
		q = runEnd(t, q+3, sep)
	}
	if q == p && q > pos || q-p > 8 || q >= len(t) {
		return -1
	}
	return q
}
