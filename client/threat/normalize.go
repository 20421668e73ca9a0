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
		b.WriteRune(unicode.ToLower(r))
		space = false
	}
	return strings.TrimRight(b.String(), " ")
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
