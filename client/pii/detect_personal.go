package pii

import "strings"

func isLocalByte(b byte) bool {
	return isAlnum(b) || strings.IndexByte("._%+-", b) >= 0
}

func isDomainByte(b byte) bool { return isAlnum(b) || b == '.' || b == '-' }

// detectEmails finds local@domain.tld with a letters-only TLD of two or
// more letters and no empty labels.
func detectEmails(c *scanCtx) {
	t := c.text
	for off := 0; ; {
		k := strings.IndexByte(t[off:], '@')
		if k < 0 {
			return
		}
		at := off + k
		off = at + 1
		s := at
		for s > 0 && isLocalByte(t[s-1]) {
			s--
		}
		for s < at && t[s] == '.' {
			s++
		}
		e := runEnd(t, at+1, isDomainByte)
		for e > at+1 && (t[e-1] == '.' || t[e-1] == '-') {
			e--
		}
		local, domain := t[s:at], t[at+1:e]
		dot := strings.LastIndexByte(domain, '.')
		if local == "" || dot <= 0 || len(domain)-dot-1 < 2 || !allIn(domain[dot+1:], isAlpha) ||
			strings.Contains(domain, "..") || strings.Contains(local, "..") || domain[0] == '-' || domain[0] == '.' {
			continue
		}
		c.add(Email, s, e, 0.97)
		off = e
	}
}

// spelledTLDs are the top-level domains accepted in "name at example dot com".
var spelledTLDs = map[string]bool{"com": true, "org": true, "net": true, "io": true, "edu": true, "gov": true,
	"de": true, "fr": true, "uk": true, "eu": true, "nl": true, "ch": true, "co": true, "ai": true, "dev": true}

// detectSpelledEmails finds addresses written out to dodge scrapers:
// "jane.doe at example dot com".
func detectSpelledEmails(c *scanCtx) {
	t, rs := c.text, c.runs
	for k := 1; k+3 < len(rs); k++ {
		at := rs[k]
		if at.e-at.s != 2 || !hasPrefixFold(t[at.s:], "at") || t[rs[k-1].e:at.s] != " " || t[at.e:rs[k+1].s] != " " {
			continue
		}
		// the domain: runs joined by "." or "-" up to " dot "
		d := k + 1
		for d+1 < len(rs) && rs[d+1].s == rs[d].e+1 && (t[rs[d].e] == '.' || t[rs[d].e] == '-') {
			d++
		}
		if d+2 >= len(rs) || t[rs[d].e:rs[d+1].s] != " " || !hasPrefixFold(t[rs[d+1].s:], "dot") || rs[d+1].e-rs[d+1].s != 3 ||
			t[rs[d+1].e:rs[d+2].s] != " " || !spelledTLDs[strings.ToLower(t[rs[d+2].s:rs[d+2].e])] {
			continue
		}
		s := rs[k-1].s
		for s > 0 && (t[s-1] == '.' || t[s-1] == '_' || t[s-1] == '-' || isAlnum(t[s-1])) {
			s--
		}
		c.add(Email, s, rs[d+2].e, 0.75)
		k = d + 2
	}
}

// word is one ASCII word of the text.
type word struct{ s, e int }

// words are the text's runs of letters and digits, joined across a single
// apostrophe or hyphen between letters (O'Brien, Jean-Luc).
func (c *scanCtx) words() []word {
	t := c.text
	ws := c.wordBuf[:0]
	for _, r := range c.runs {
		if n := len(ws); n > 0 && ws[n-1].e+1 == r.s && (t[r.s-1] == '\'' || t[r.s-1] == '-') && isAlpha(t[r.s]) && isAlpha(t[r.s-2]) {
			ws[n-1].e = r.e
			continue
		}
		ws = append(ws, word(r))
	}
	c.wordBuf = ws
	return ws
}

// capitalized: an upper-case letter, then at least one lower-case letter
// (McDonald, O'Brien, Jean-Luc).
func capitalized(w string) bool {
	if len(w) < 2 || !isUpper(w[0]) {
		return false
	}
	lower := false
	for i := 1; i < len(w); i++ {
		lower = lower || isLower(w[i])
	}
	return lower
}

var titles = map[string]bool{"Mr": true, "Mrs": true, "Ms": true, "Miss": true, "Dr": true, "Prof": true, "Sir": true, "Dame": true, "Mx": true}

var nameCues = []string{"name:", "name is", "dear ", "regards,", "sincerely,", "contact:", "signed by", "assigned to", "from:", "patient:", "customer:", "employee:", "cc:", "attn:", "thanks,"}

// detectNames finds person names: capitalised words after a title (Dr.,
// Ms.), a common first name followed by a capitalised surname, and
// capitalised words after a cue ("Name:", "Dear", "Regards,").
func detectNames(c *scanCtx) {
	t := c.text
	ws := c.words()
	// gap reports whether the words k and k+1 are separated by one space (or ". " after an initial).
	gap := func(k int) bool {
		if k+1 >= len(ws) {
			return false
		}
		g := t[ws[k].e:ws[k+1].s]
		return g == " " || (g == ". " && ws[k].e-ws[k].s == 1)
	}
	nameWord := func(k int) bool {
		w := t[ws[k].s:ws[k].e]
		return (capitalized(w) || (len(w) == 1 && isUpper(w[0]))) && !notNames[w]
	}
	// extend takes up to max name words from k on.
	extend := func(k, most int) (int, int) {
		n := 0
		for k+n < len(ws) && n < most && nameWord(k+n) && (n == 0 || gap(k+n-1)) {
			n++
		}
		return n, k + n - 1
	}
	for k := 0; k < len(ws); k++ {
		if !isUpper(t[ws[k].s]) {
			continue // every name starts with a capital
		}
		w := t[ws[k].s:ws[k].e]
		switch {
		case titles[w] && k+1 < len(ws):
			g := t[ws[k].e:ws[k+1].s]
			if g != " " && g != ". " {
				continue
			}
			if n, last := extend(k+1, 3); n > 0 && !(n == 1 && len(t[ws[k+1].s:ws[k+1].e]) == 1) {
				c.add(PersonName, ws[k+1].s, ws[last].e, 0.9)
				k = last
			}
		case firstNames[w] && gap(k) && nameWord(k+1):
			_, last := extend(k, 4)
			if lw := t[ws[last].s:ws[last].e]; len(lw) == 1 {
				last-- // a trailing initial is a sentence's next word
			}
			if gap(last) && notNames[t[ws[last+1].s:ws[last+1].e]] {
				k = last + 1 // "Austin Convention Center": a place named after someone
				continue
			}
			c.add(PersonName, ws[k].s, ws[last].e, 0.85)
			k = last
		case capitalized(w) && !notNames[w] && c.contextBefore(ws[k].s, 12, nameCues...):
			if n, last := extend(k, 3); n >= 2 {
				c.add(PersonName, ws[k].s, ws[last].e, 0.8)
				k = last
			} else if firstNames[w] {
				c.add(PersonName, ws[k].s, ws[k].e, 0.7)
			}
		}
	}
}

var streetSuffixes = map[string]bool{
	"Street": true, "St": true, "Avenue": true, "Ave": true, "Road": true, "Rd": true, "Boulevard": true,
	"Blvd": true, "Lane": true, "Ln": true, "Drive": true, "Dr": true, "Court": true, "Ct": true, "Way": true,
	"Place": true, "Pl": true, "Terrace": true, "Parkway": true, "Pkwy": true, "Circle": true, "Cir": true,
	"Highway": true, "Hwy": true, "Square": true, "Sq": true, "Trail": true, "Crescent": true, "Close": true,
	"Row": true, "Gardens": true, "Walk": true,
}

var unitWords = map[string]bool{"Apt": true, "Suite": true, "Unit": true, "Floor": true, "Ste": true, "Apartment": true}

// detectAddresses finds street addresses: a house number, one to four
// capitalised words and a street suffix, extended by a unit and by
// ", City, ST 12345" (or a UK postcode) when they follow; and PO boxes.
func detectAddresses(c *scanCtx) {
	t := c.text
	c.numRuns(func(i int) int {
		j := runEnd(t, i, isDigit)
		if j < len(t) && isUpper(t[j]) && j+1 < len(t) && t[j+1] == ' ' {
			j++ // 221B
		}
		if j-i > 6 || j >= len(t) || t[j] != ' ' {
			return j
		}
		p, n, end := j+1, 0, -1
		for n < 6 && p < len(t) {
			we := runEnd(t, p, func(b byte) bool { return isAlnum(b) || b == '\'' })
			w := t[p:we]
			if w == "" {
				break
			}
			if n >= 1 && streetSuffixes[w] {
				end = we
				if end < len(t) && t[end] == '.' {
					end++
				}
				break
			}
			if !capitalized(w) && !ordinal(w) && !(len(w) <= 2 && allIn(w, isUpper)) {
				break
			}
			n++
			if we >= len(t) || t[we] != ' ' {
				break
			}
			p = we + 1
		}
		if end < 0 {
			return j
		}
		conf := 0.85
		for _, d := range []string{" NW", " NE", " SW", " SE", " N", " S", " E", " W"} {
			if strings.HasPrefix(t[end:], d) && boundaryAfter(t, end+len(d), isAlnum) {
				end += len(d)
				break
			}
		}
		end = addressUnit(t, end)
		if e := addressTail(t, end); e > end {
			end, conf = e, 0.95
		}
		c.add(PostalAddress, i, end, conf)
		return end
	})
	c.atRuns(poBoxSet, func(i, k int) {
		if n := len(poBoxSet.list[k]); runEnd(t, i+n, isDigit) > i+n {
			j := runEnd(t, i+n, isDigit)
			c.add(PostalAddress, i, addressTail(t, j), 0.8)
		}
	})
}

var poBoxSet = newFoldSet("po box ", "p.o. box ")

func ordinal(w string) bool {
	n := len(w)
	return n >= 3 && allDigits(w[:n-2]) && strings.Contains("st nd rd th", w[n-2:])
}

// addressUnit extends past ", Apt 4B" or " Suite 200".
func addressUnit(t string, end int) int {
	p := end
	if strings.HasPrefix(t[p:], ", ") {
		p += 2
	} else if strings.HasPrefix(t[p:], " ") {
		p++
	}
	we := runEnd(t, p, isAlpha)
	if !unitWords[t[p:we]] || !strings.HasPrefix(t[we:], " ") {
		if we < len(t) && t[p] == '#' {
			we = p
		} else {
			return end
		}
	}
	q := runEnd(t, we+1, func(b byte) bool { return isAlnum(b) || b == '-' })
	if q == we+1 || !strings.ContainsAny(t[we+1:q], "0123456789") {
		return end
	}
	return q
}

// addressTail extends past ", City, ST 12345[-6789]" or ", City PC1 2AB".
func addressTail(t string, end int) int {
	p := end
	if !strings.HasPrefix(t[p:], ", ") {
		return end
	}
	p += 2
	n := 0
	for n < 3 {
		we := runEnd(t, p, isAlpha)
		if !capitalized(t[p:we]) {
			break
		}
		n++
		p = we
		if !strings.HasPrefix(t[p:], " ") || we+1 >= len(t) || !isUpper(t[we+1]) || (we+3 <= len(t) && allIn(t[we+1:we+3], isUpper)) {
			break
		}
		p++
	}
	if n == 0 {
		return end
	}
	if strings.HasPrefix(t[p:], ",") {
		p++
	}
	if !strings.HasPrefix(t[p:], " ") {
		return end
	}
	p++
	// US: ST 12345
	if p+8 <= len(t) && allIn(t[p:p+2], isUpper) && t[p+2] == ' ' && allDigits(t[p+3:p+8]) {
		e := p + 8
		if e+5 <= len(t) && t[e] == '-' && allDigits(t[e+1:e+5]) {
			e += 5
		}
		if numEnd(t, e) {
			return e
		}
	}
	// ZIP right after the city, and UK postcodes: A9 9AA, A99 9AA, AA9 9AA, AA99 9AA, A9A 9AA, AA9A 9AA.
	if p+5 <= len(t) && allDigits(t[p:p+5]) && numEnd(t, p+5) {
		return p + 5
	}
	a := runEnd(t, p, isAlnum)
	if o := t[p:a]; len(o) >= 2 && len(o) <= 4 && isUpper(o[0]) && isDigit(o[len(o)-1]) || len(o) >= 3 && isUpper(o[0]) && isUpper(o[len(o)-1]) && len(o) <= 4 {
		if a+4 <= len(t) && t[a] == ' ' && isDigit(t[a+1]) && allIn(t[a+2:a+4], isUpper) && boundaryAfter(t, a+4, isAlnum) {
			return a + 4
		}
	}
	return end
}
