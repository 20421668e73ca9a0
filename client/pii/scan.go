package pii

import (
	"cmp"
	"slices"
	"sync"
)

// Scanner detects PII with a fixed set of per-type thresholds. It is safe
// for concurrent use.
type Scanner struct {
	th Thresholds
}

// NewScanner returns a scanner that reports findings at or above th's
// threshold for their type.
func NewScanner(th Thresholds) *Scanner { return &Scanner{th: th} }

var defaultScanner = NewScanner(DefaultThresholds())

// Scan reports the findings in text at the default thresholds, sorted by
// position and never overlapping.
func Scan(text string) []Finding { return defaultScanner.Scan(text) }

// Thresholds are the scanner's thresholds.
func (s *Scanner) Thresholds() Thresholds { return s.th }

// Scan reports the findings in text at s's thresholds, sorted by position
// and never overlapping.
func (s *Scanner) Scan(text string) []Finding {
	c := newScanCtx(text)
	defer c.release()
	for _, d := range detectors {
		d(c)
	}
	kept := c.out[:0]
	for _, f := range c.out {
		if f.Confidence >= s.th.Get(f.Type) {
			kept = append(kept, f)
		}
	}
	return c.resolve(kept)
}

// ctxPool reuses the buffers of a scan (runs, words, candidates); nothing
// in them outlives the scan.
var ctxPool = sync.Pool{New: func() any { return new(scanCtx) }}

// maxPooledRuns bounds what a pooled scan keeps: the buffers of a huge
// message are left to the garbage collector.
const maxPooledRuns = 1 << 14

// release returns c to the pool without the text it scanned.
func (c *scanCtx) release() {
	c.text = ""
	if cap(c.runs) > maxPooledRuns {
		return
	}
	ctxPool.Put(c)
}

// detectors run in this order; the order does not matter for the result,
// which resolve makes deterministic.
var detectors = []func(*scanCtx){
	detectPrivateKeys, detectJWTs, detectGitHubTokens, detectAWSKeys, detectDatabaseURLs,
	detectAPIKeys, detectPasswords, detectEmails, detectSpelledEmails, detectSSNs, detectCards, detectPhones,
	detectIPs, detectNames, detectAddresses,
}

// resolve drops overlapping findings: the more confident one wins, then the
// longer one, then the earlier one, then the lower type number. The result
// is sorted by start, in a new slice. Taken bytes are marked in a bitset,
// so the cost grows with the text and the findings, never with their
// product.
func (c *scanCtx) resolve(fs []Finding) []Finding {
	switch len(fs) {
	case 0:
		return nil // the same whether the pooled buffer was new or reused
	case 1:
		return []Finding{fs[0]}
	}
	slices.SortFunc(fs, func(a, b Finding) int {
		return cmp.Or(
			cmp.Compare(b.Confidence, a.Confidence),
			cmp.Compare(b.End-b.Start, a.End-a.Start),
			cmp.Compare(a.Start, b.Start),
			cmp.Compare(a.Type, b.Type))
	})
	taken := c.taken[:0]
	for range (len(c.text) + 63) / 64 {
		taken = append(taken, 0)
	}
	c.taken = taken
	out := make([]Finding, 0, len(fs))
	for _, f := range fs {
		if anySet(taken, f.Start, f.End) {
			continue
		}
		setRange(taken, f.Start, f.End)
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b Finding) int { return cmp.Compare(a.Start, b.Start) })
	return out
}

// anySet reports whether a bit in [s, e) is set.
func anySet(bits []uint64, s, e int) bool {
	for i := s; i < e; {
		if i%64 == 0 && e-i >= 64 {
			if bits[i/64] != 0 {
				return true
			}
			i += 64
			continue
		}
		if bits[i/64]&(1<<(i%64)) != 0 {
			return true
		}
		i++
	}
	return false
}

// setRange sets the bits in [s, e).
func setRange(bits []uint64, s, e int) {
	for i := s; i < e; {
		if i%64 == 0 && e-i >= 64 {
			bits[i/64] = ^uint64(0)
			i += 64
			continue
		}
		bits[i/64] |= 1 << (i % 64)
		i++
	}
}

// scanCtx is one scan: the text, its runs of letters and digits, and the
// candidate findings so far. The runs come from one pass over the text, so
// that the detectors visit candidates instead of every byte.
type scanCtx struct {
	text    string
	runs    []span // maximal runs of ASCII letters and digits, in order
	wordBuf []word
	hits    []hit // prefix matches at run starts, computed on first use
	out     []Finding
	taken   []uint64 // resolve's bitset of bytes already in a finding

	hitsDone bool
}

// span is [s, e) in the text.
type span struct{ s, e int }

func newScanCtx(text string) *scanCtx {
	c := ctxPool.Get().(*scanCtx)
	c.text, c.out, c.hitsDone = text, c.out[:0], false
	runs := c.runs[:0]
	in := false
	for i := 0; i < len(text); i++ {
		alnum := asciiClass[text[i]] != clOther
		switch {
		case alnum && !in:
			runs = append(runs, span{i, 0})
			in = true
		case !alnum && in:
			runs[len(runs)-1].e = i
			in = false
		}
	}
	if in {
		runs[len(runs)-1].e = len(text)
	}
	c.runs = runs
	return c
}

const (
	clOther = iota
	clUpper
	clLower
	clDigit
)

var asciiClass = func() (t [256]uint8) {
	for ch := 'A'; ch <= 'Z'; ch++ {
		t[ch] = clUpper
		t[ch+'a'-'A'] = clLower
	}
	for ch := '0'; ch <= '9'; ch++ {
		t[ch] = clDigit
	}
	return t
}()

// numRuns calls fn with the start of every run that begins with a digit and
// does not continue a dotted, dashed or slashed number ("1.2", "12-34").
// fn returns where the scan may resume; runs starting before it are
// skipped.
func (c *scanCtx) numRuns(fn func(i int) int) {
	next := 0
	for _, r := range c.runs {
		if r.s < next || !isDigit(c.text[r.s]) || !numStart(c.text, r.s) {
			continue
		}
		next = fn(r.s)
	}
}

func (c *scanCtx) add(t Type, start, end int, conf float64) {
	if start < 0 || end > len(c.text) || start >= end {
		return
	}
	c.out = append(c.out, Finding{Type: t, Start: start, End: end, Confidence: min(max(conf, 0), 1)})
}
