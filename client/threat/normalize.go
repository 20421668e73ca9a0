package threat

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// invisible reports the characters that render as nothing: zero-width
// spaces and joiners, word joiners, the BOM, bidirectional controls and the
// Unicode tag block.
func invisible(r rune) bool {
	switch {
	case r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2060 && r <= 0x2064,
		r >= 0x2066 && r <= 0x2069, r == 0xFEFF, r == 0x180E, r == 0x00AD, r >= 0xE0000 && r <= 0xE007F:
		return true
	}
	return false
}

// bidiControl reports the embedding, override and isolate controls that
// reorder how text is displayed ("Trojan Source"); LRM and RLM, which RTL
// text uses legitimately, are not among them.
func bidiControl(r rune) bool {
	return (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069)
}

// normalize folds text for phrase matching: NFKC (full-width and other
// compatibility forms become ASCII), lower case, invisible characters
// removed, every run of white space and of the punctuation that pads a
// phrase ("ignore -- previous") collapsed to one space.
func normalize(s string) string {
	s = norm.NFKC.String(s)
	var b strings.Builder
	b.Grow(len(s))
	space := true // no leading space
	for _, r := range s {
		switch {
		case invisible(r):
			continue
		case unicode.IsSpace(r) || r == '*' || r == '~':
			if !space {
				b.WriteByte(' ')
				space = true
			}
			continue
		}
		r = unicode.ToLower(r)
		if r >= 0x250 {
			if l, ok := confusables[r]; ok {
				r = l
			}
		}
		b.WriteRune(r)
		space = false
	}
	return joinSpelledOut(strings.TrimRight(b.String(), " "))
}

// joinSpelledOut joins words spelled one letter at a time ("i-g-n-o-r-e",
// "i.g.n.o.r.e": at least four letters, one separator kind per word) so
// that phrase rules see "ignore".
func joinSpelledOut(s string) string {
	isLetter := func(b byte) bool { return 'a' <= b && b <= 'z' }
	var out []byte // nil until something is joined
	for i := 0; i < len(s); {
		if !isLetter(s[i]) || (i > 0 && isLetter(s[i-1])) || i+1 >= len(s) || (s[i+1] != '-' && s[i+1] != '.') {
			if out != nil {
				out = append(out, s[i])
			}
			i++
			continue
		}
		sep, j, n := s[i+1], i, 1
		for j+2 < len(s) && s[j+1] == sep && isLetter(s[j+2]) && (j+3 >= len(s) || !isLetter(s[j+3])) {
			j += 2
			n++
		}
		if n < 4 {
			if out != nil {
				out = append(out, s[i])
			}
			i++
			continue
		}
		if out == nil {
			out = append(make([]byte, 0, len(s)), s[:i]...)
		}
		for k := i; k <= j; k += 2 {
			out = append(out, s[k])
		}
		i = j + 1
	}
	if out == nil {
		return s
	}
	return string(out)
}

// confusables maps Cyrillic and Greek letters that look like Latin ones
// (lower case, after folding) to those Latin letters.
var confusables = map[rune]rune{
	'а': 'a', 'в': 'b', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't',
	'у': 'y', 'х': 'x', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ɡ': 'g',
	'α': 'a', 'β': 'b', 'ε': 'e', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x',
}

// tagText decodes text hidden in Unicode tag characters (U+E0020–U+E007E
// mirror printable ASCII), or "" when there is none.
func tagText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r >= 0xE0020 && r <= 0xE007E {
			b.WriteByte(byte(r - 0xE0000))
		}
		i += n
	}
	return b.String()
}
