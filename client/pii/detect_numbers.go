package pii

import (
	"net/netip"
	"strings"
)

// numStart reports whether a number starts at i: a digit not continuing a
// word or a dotted/dashed number before it.
func numStart(t string, i int) bool {
	if !isDigit(t[i]) || !boundaryBefore(t, i, isAlnum) {
		return false
	}
	return !(i >= 2 && strings.IndexByte("-./", t[i-1]) >= 0 && isDigit(t[i-2]))
}

// numEnd reports whether a number may end at j: no letter or digit after
// it, and no separator that continues it with another digit.
func numEnd(t string, j int) bool {
	if j >= len(t) {
		return true
	}
	if isAlnum(t[j]) {
		return false
	}
	return !(strings.IndexByte("-./", t[j]) >= 0 && j+1 < len(t) && isDigit(t[j+1]))
}

func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func allDigits(s string) bool { return s != "" && allIn(s, isDigit) }

// validSSN applies the SSA's rules: area 001–899 except 666, group 01–99,
// serial 0001–9999.
func validSSN(area, group, serial string) bool {
	a := atoi(area)
	return a > 0 && a != 666 && a < 900 && atoi(group) > 0 && atoi(serial) > 0
}

var ssnWords = []string{"ssn", "social security", "ss#", "taxpayer"}

// detectSSNs finds NNN-NN-NNNN (or spaced) numbers in the valid ranges, and
// nine bare digits right after a word naming an SSN.
func detectSSNs(c *scanCtx) {
	t := c.text
	c.numRuns(func(i int) int {
		if i+11 <= len(t) && (t[i+3] == '-' || t[i+3] == ' ') && t[i+6] == t[i+3] &&
			allDigits(t[i:i+3]) && allDigits(t[i+4:i+6]) && allDigits(t[i+7:i+11]) && numEnd(t, i+11) {
			if validSSN(t[i:i+3], t[i+4:i+6], t[i+7:i+11]) {
				conf := pick(t[i+3] == '-', 0.9, 0.65)
				if c.contextBefore(i, 32, ssnWords...) {
					conf += 0.09
				}
				c.add(SSN, i, i+11, conf)
			}
			return i + 11
		}
		if j := runEnd(t, i, isDigit); j-i == 9 && numEnd(t, j) && validSSN(t[i:i+3], t[i+3:i+5], t[i+5:i+9]) {
			c.add(SSN, i, j, pick(c.contextBefore(i, 32, ssnWords...), 0.85, 0.3))
		}
		return i + 1
	})
}

// luhn reports whether the digits pass the Luhn checksum.
func luhn(d []byte) bool {
	sum := 0
	for k := range d {
		v := int(d[len(d)-1-k] - '0')
		if k%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// cardBrand reports whether the digits start with a known issuer prefix
// and have that issuer's length.
func cardBrand(d []byte) bool {
	n, p2, p4 := len(d), atoi(string(d[:2])), atoi(string(d[:4]))
	switch {
	case d[0] == '4':
		return n == 13 || n == 16 || n == 19
	case (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720):
		return n == 16
	case p2 == 34 || p2 == 37:
		return n == 15
	case p4 == 6011 || p2 == 65 || (p4/10 >= 644 && p4/10 <= 649), p2 == 35, p2 == 62:
		return n >= 16 && n <= 19
	case p2 == 36 || p2 == 38 || (p4/10 >= 300 && p4/10 <= 305):
		return n == 14 || n == 16
	}
	return false
}

// detectCards finds 13–19 digit numbers, possibly grouped by spaces or
// dashes, that pass Luhn; an issuer prefix and length make them confident.
func detectCards(c *scanCtx) {
	t := c.text
	var buf [24]byte
	c.numRuns(func(i int) int {
		if i > 0 && t[i-1] == '+' {
			return i + 1
		}
		n, sep, j := 0, byte(0), i
		type cut struct{ end, n int }
		var cuts [8]cut
		nc := 0
		for j < len(t) && n < len(buf) {
			if isDigit(t[j]) {
				buf[n] = t[j]
				n++
				j++
				if j == len(t) || !isDigit(t[j]) {
					if nc < len(cuts) {
						cuts[nc] = cut{j, n}
						nc++
					}
				}
				continue
			}
			if (t[j] == ' ' || t[j] == '-' || t[j] == '.') && (sep == 0 || sep == t[j]) && j+1 < len(t) && isDigit(t[j+1]) {
				sep = t[j]
				j++
				continue
			}
			break
		}
		for k := nc - 1; k >= 0; k-- {
			d := buf[:cuts[k].n]
			if len(d) < 13 || len(d) > 19 || !numEnd(t, cuts[k].end) && k == nc-1 || !luhn(d) {
				continue
			}
			conf := 0.5 // a random number passes Luhn one time in ten
			if cardBrand(d) {
				conf = 0.95
			}
			c.add(CreditCard, i, cuts[k].end, conf)
			return cuts[k].end
		}
		return i + 1
	})
}

var phoneWords = []string{"phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "reach me"}

// detectPhones finds international numbers (+CC and 8–15 digits), North
// American (NPA) NXX-XXXX forms, national forms with a leading 0, and ten
// bare digits after a word naming a phone.
func detectPhones(c *scanCtx) {
	t := c.text
	c.numRuns(func(i int) int {
		plus := i > 0 && t[i-1] == '+' && boundaryBefore(t, i-1, isAlnum)
		paren := i > 0 && t[i-1] == '(' && boundaryBefore(t, i-1, isAlnum)
		start := i
		if plus || paren {
			start = i - 1
		}
		var groups, ends [8]int
		ng, j := 0, i
		for j < len(t) && ng < len(groups) {
			if t[j] == '(' && j+1 < len(t) && isDigit(t[j+1]) {
				j++
			}
			k := runEnd(t, j, isDigit)
			if k == j {
				break
			}
			groups[ng], ends[ng], ng, j = k-j, k, ng+1, k
			if j < len(t) && t[j] == ')' {
				j++
			}
			if j+1 < len(t) && strings.IndexByte(" -.", t[j]) >= 0 && (isDigit(t[j+1]) || t[j+1] == '(') {
				j++
				continue
			}
			break
		}
		// The longest prefix of the groups that makes a phone number wins:
		// "+44 20 5921 7466 10.2.3.4" is a number followed by an address.
		ctx := -1
		for n := ng; n >= 1; n-- {
			end := ends[n-1]
			if !numEnd(t, end) {
				continue
			}
			conf := phoneConf(t, start, end, groups[:n], plus)
			if conf == 0 {
				continue
			}
			if ctx < 0 {
				ctx = int(pick(c.contextBefore(start, 30, phoneWords...), 1, 0))
			}
			if ctx == 1 {
				conf = max(conf+0.08, 0.8) // ten bare digits after "phone:" are a number
			} else if t[start] != '(' && ng == 3 && n == 3 && strings.IndexByte(t[start:end], '.') >= 0 {
				conf = min(conf, 0.7) // 555.123.4567 is also a dotted identifier
			}
			c.add(Phone, start, end, conf)
			return end
		}
		return i + 1
	})
}

// phoneConf is the confidence that groups of digits make a phone number.
func phoneConf(t string, start, end int, g []int, plus bool) float64 {
	digits := 0
	for _, n := range g {
		digits += n
	}
	switch {
	case plus && digits >= 8 && digits <= 15 && (len(g) == 1 || g[0] <= 3) && len(g) >= 2 || plus && len(g) == 1 && digits >= 10 && digits <= 15:
		return 0.9
	case plus:
	case eq(g, 3, 3, 4), eq(g, 1, 3, 3, 4) && t[start] == '1':
		return 0.85
	case t[start] == '0' && (eq(g, 3, 4, 4) || eq(g, 4, 3, 4) || eq(g, 5, 6) || eq(g, 2, 4, 4) || eq(g, 2, 2, 2, 2, 2)):
		return 0.75
	case eq(g, 10):
		return 0.4
	}
	return 0
}

func eq(g []int, want ...int) bool {
	if len(g) != len(want) {
		return false
	}
	for k := range g {
		if g[k] != want[k] {
			return false
		}
	}
	return true
}

var versionWords = []string{"version", "ver.", "release", "build", "firmware", "tag ", "sdk", "semver", "upgrade to", "v."}

func isV6Byte(b byte) bool { return isHex(b) || b == ':' || b == '.' }

// detectIPs finds IPv4 and IPv6 addresses that net/netip parses. A dotted
// quad after a word about versions, or with every part below 10, is less
// likely to be an address.
func detectIPs(c *scanCtx) {
	t := c.text
	c.numRuns(func(i int) int {
		if i > 0 && t[i-1] == '.' {
			return i + 1
		}
		j := runEnd(t, i, func(b byte) bool { return isDigit(b) || b == '.' })
		for j > i && t[j-1] == '.' {
			j--
		}
		if strings.Count(t[i:j], ".") == 3 && boundaryAfter(t, j, isAlnum) && !(j < len(t) && t[j] == ':' && j+1 < len(t) && isHex(t[j+1]) && !isDigit(t[j+1])) {
			if a, err := netip.ParseAddr(t[i:j]); err == nil && a.Is4() {
				conf := 0.9
				if b := a.As4(); b[0] < 10 && b[1] < 10 && b[2] < 10 && b[3] < 10 {
					conf = 0.5
				}
				if w := clauseStart(t, i, 16); c.contextBefore(i, i-w, versionWords...) {
					conf = 0.3
				}
				c.add(IPAddress, i, j, conf)
			}
		}
		return j
	})
	for off := 0; off < len(t); {
		p := strings.IndexByte(t[off:], ':')
		if p < 0 {
			return
		}
		i := off + p
		for i > 0 && isV6Byte(t[i-1]) {
			i--
		}
		j := runEnd(t, i, isV6Byte)
		off = j + 1
		if !boundaryBefore(t, i, isAlnum) {
			continue
		}
		for j > i && (t[j-1] == '.' || (t[j-1] == ':' && !strings.HasSuffix(t[i:j], "::"))) {
			j--
		}
		if tok := t[i:j]; strings.Count(tok, ":") >= 2 && len(tok) >= 3 && boundaryAfter(t, j, isAlnum) {
			if a, err := netip.ParseAddr(tok); err == nil && a.Is6() {
				conf := 0.9
				if groups := v6Groups(tok); tok == "::1" {
					conf = 0.7
				} else if a.Is4In6() {
					conf = 0.9 // ::ffff:192.0.2.1
				} else if groups < 3 {
					conf = 0.45 // "a::b", "fe::1": as likely code as an address
				} else if groups < 5 && !strings.Contains(tok, "::") {
					conf = 0 // not parsed anyway; kept for clarity
				}
				c.add(IPAddress, i, j, conf)
			}
		}
	}
}

func pick(cond bool, yes, no float64) float64 {
	if cond {
		return yes
	}
	return no
}

// clauseStart is where the clause holding i starts, at most window bytes
// back: a cue in the sentence before ("…the release. host 10.1.2.3") is not
// about this value.
func clauseStart(t string, i, window int) int {
	w := max(0, i-window)
	for k := i - 1; k > w; k-- {
		if (t[k] == ' ' || t[k] == '\n') && (t[k-1] == '.' || t[k-1] == ';' || t[k-1] == '!' || t[k-1] == '?') || t[k] == '\n' {
			return k
		}
	}
	return w
}

// v6Groups counts the non-empty colon-separated groups of an IPv6 address.
func v6Groups(tok string) int {
	n, in := 0, false
	for i := 0; i < len(tok); i++ {
		switch {
		case tok[i] == ':':
			in = false
		case !in:
			n, in = n+1, true
		}
	}
	return n
}
