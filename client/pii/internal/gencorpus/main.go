// Command gencorpus writes the labelled PII corpus client/pii/testdata/corpus.jsonl
// from a fixed seed, so the file is the same on every run:
//
//	go run ./client/pii/internal/gencorpus -out client/pii/testdata/corpus.jsonl
//
// Each line is one synthetic message, {"id", "text", "labels": [{"type",
// "start", "end"}]}, with byte spans. Messages mix filler prose, zero to three
// labelled values in varied templates, and hard negatives that look like PII
// but are not: order numbers that fail Luhn, version strings shaped like IPs,
// UUIDs, hex digests, dates, times, MAC addresses, SSN-shaped numbers in
// invalid ranges, "password is required". Names are drawn partly from given
// names the detector does not know, so its name recall is not flattered.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"strings"
)

type label struct {
	Type  string `json:"type"`
	Start int    `json:"start"`
	End   int    `json:"end"`
}

type record struct {
	ID     int     `json:"id"`
	Text   string  `json:"text"`
	Labels []label `json:"labels"`
}

// msg builds a message and its labels.
type msg struct {
	b      strings.Builder
	labels []label
}

func (m *msg) text(s string) { m.b.WriteString(s) }
func (m *msg) pii(typ, v string) {
	m.labels = append(m.labels, label{typ, m.b.Len(), m.b.Len() + len(v)})
	m.b.WriteString(v)
}

// tmpl writes a template with one "%s" that becomes the labelled value.
func (m *msg) tmpl(t, typ, v string) {
	pre, post, _ := strings.Cut(t, "%s")
	m.text(pre)
	m.pii(typ, v)
	m.text(post)
}

type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }
func (g gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}
func (g gen) from(alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.r.IntN(len(alphabet))]
	}
	return string(b)
}

const (
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	lower  = "abcdefghijklmnopqrstuvwxyz"
	digits = "0123456789"
	alnum  = upper + lower + digits
	b64    = alnum + "+/"
	b64url = alnum + "-_"
	hexd   = "0123456789abcdef"
)

var filler = []string{
	"Following up on yesterday's sync about the quarterly reconciliation.",
	"The federation agent finished the batch and is waiting for the next task.",
	"Please review the attached summary before the meeting.",
	"We rolled the change out to the staging cluster first.",
	"Let me know if the numbers look off to you.",
	"The settlement window closes at noon, so there is no rush.",
	"I have updated the ticket with the latest status.",
	"Thanks for the quick turnaround on this one.",
	"Our agent will retry the request if the partner does not answer.",
	"The report covers the last thirty days of activity.",
	"Can your team confirm the schedule for next week?",
	"All checks passed on the second run.",
	"The fraud signal was shared with the partner bank.",
	"Nothing else changed in the deployment.",
	"Ping me once the migration is done.",
}

// Given names: most are in the detector's list, the last ones are not.
var firstKnown = []string{"James", "Maria", "Wei", "Priya", "Carlos", "Fatima", "John", "Sarah", "Hiroshi",
	"Olga", "Kwame", "Sofia", "Ahmed", "Emily", "Lukas", "Ananya", "Pierre", "Ngozi", "David", "Elena"}
var firstUnknown = []string{"Oluwaseun", "Anneliese", "Thandiwe", "Bartholomew", "Giedre", "Xiomara",
	"Ruairi", "Saoirse", "Tadhg", "Ignatius", "Wilhelmina", "Zebulon"}
var surnames = []string{"Smith", "Garcia", "Zhang", "Patel", "Okafor", "Nakamura", "Kowalski", "Müller",
	"Rossi", "Johnson", "Dubois", "Haddad", "Ivanova", "Fernandes", "Nguyen", "O'Brien", "McAllister", "Lindqvist"}
var streets = []string{"Main", "Oak", "Maple", "Pennsylvania", "Cedar", "Elm", "Sunset", "Lake", "Hill", "Park", "Washington", "Baker", "King"}
var suffixes = []string{"Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Lane", "Drive", "Court", "Way", "Place"}
var cities = []string{"Springfield", "Portland", "Austin", "San Jose", "Denver", "Boston", "Madison", "Salt Lake City"}
var states = []string{"IL", "OR", "TX", "CA", "CO", "MA", "WI", "UT", "NY"}

func (g gen) name() string {
	first := g.pick(firstKnown...)
	if g.r.IntN(4) == 0 {
		first = g.pick(firstUnknown...)
	}
	return first + " " + g.pick(surnames...)
}

func (g gen) email() string {
	f, l := strings.ToLower(g.pick(firstKnown...)), strings.ToLower(g.pick("smith", "garcia", "zhang", "patel", "okafor"))
	local := g.pick(f+"."+l, f+l+g.digits(2), f[:1]+l, f+"_"+l, f+"+"+g.pick("billing", "ops"))
	return local + "@" + g.pick("example.com", "acme-bank.co.uk", "globex.io", "mail.partner.org", "initech.de")
}

func (g gen) ssn() string {
	for {
		a, gr, s := 1+g.r.IntN(899), 1+g.r.IntN(99), 1+g.r.IntN(9999)
		if a != 666 {
			return fmt.Sprintf("%03d-%02d-%04d", a, gr, s)
		}
	}
}

func luhnDigit(body string) byte {
	sum := 0
	for k := 0; k < len(body); k++ {
		v := int(body[len(body)-1-k] - '0')
		if k%2 == 0 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return byte('0' + (10-sum%10)%10)
}

func (g gen) card() string {
	var prefix string
	n := 16
	switch g.r.IntN(4) {
	case 0:
		prefix = "4"
	case 1:
		prefix = fmt.Sprint(51 + g.r.IntN(5))
	case 2:
		prefix, n = g.pick("34", "37"), 15
	default:
		prefix = "6011"
	}
	body := prefix + g.digits(n-1-len(prefix))
	num := body + string(luhnDigit(body))
	switch g.r.IntN(3) {
	case 0:
		return num
	case 1:
		if n == 15 {
			return num[:4] + " " + num[4:10] + " " + num[10:]
		}
		return num[:4] + " " + num[4:8] + " " + num[8:12] + " " + num[12:]
	default:
		if n == 15 {
			return num[:4] + "-" + num[4:10] + "-" + num[10:]
		}
		return num[:4] + "-" + num[4:8] + "-" + num[8:12] + "-" + num[12:]
	}
}

// imei is a 15-digit device number: it passes Luhn like a card, and is not one.
func (g gen) imei() string {
	body := "35" + g.digits(12)
	return body + string(luhnDigit(body))
}

// notLuhn is a 16-digit order number that fails the Luhn check.
func (g gen) notLuhn() string {
	body := g.digits(15)
	good := luhnDigit(body)
	return body + string('0'+(good-'0'+1+byte(g.r.IntN(9)))%10)
}

func (g gen) phone() string {
	a, b, c := 200+g.r.IntN(800), 200+g.r.IntN(800), g.digits(4)
	switch g.r.IntN(6) {
	case 0:
		return fmt.Sprintf("+1 %d %d %s", a, b, c)
	case 1:
		return fmt.Sprintf("(%d) %d-%s", a, b, c)
	case 2:
		return fmt.Sprintf("%d-%d-%s", a, b, c)
	case 3:
		return "+44 20 " + g.digits(4) + " " + g.digits(4)
	case 4:
		return "+49 30 " + g.digits(7)
	default:
		return "+33 1 " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2) + " " + g.digits(2)
	}
}

func (g gen) ipv4() string {
	switch g.r.IntN(3) {
	case 0:
		return fmt.Sprintf("10.%d.%d.%d", g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
	case 1:
		return fmt.Sprintf("192.168.%d.%d", g.r.IntN(256), 1+g.r.IntN(254))
	default:
		return fmt.Sprintf("%d.%d.%d.%d", 11+g.r.IntN(200), g.r.IntN(256), g.r.IntN(256), 1+g.r.IntN(254))
	}
}

func (g gen) ipv6() string {
	h := func() string { return fmt.Sprintf("%x", g.r.IntN(0x10000)) }
	if g.r.IntN(2) == 0 {
		return "2001:db8:" + h() + ":" + h() + ":" + h() + ":" + h() + ":" + h() + ":" + h()
	}
	return "fd00:" + h() + "::" + h() + ":" + h()
}

func (g gen) address() string {
	a := fmt.Sprintf("%d %s %s", 1+g.r.IntN(9999), g.pick(streets...), g.pick(suffixes...))
	switch g.r.IntN(3) {
	case 0:
		return a
	case 1:
		return a + ", " + g.pick(cities...) + ", " + g.pick(states...) + " " + g.digits(5)
	default:
		return a + ", Apt " + fmt.Sprint(1+g.r.IntN(40)) + g.pick("", "B") + ", " + g.pick(cities...) + ", " + g.pick(states...) + " " + g.digits(5)
	}
}

func (g gen) password() string {
	return g.from(alnum, 6+g.r.IntN(6)) + g.pick("!", "#", "$", "9", "@1", "")
}

func (g gen) jwt() string {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"alg":"%s","typ":"JWT"}`, g.pick("HS256", "RS256", "ES256"))))
	pl := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf(`{"sub":"agent-%d","iat":%d}`, g.r.IntN(1000), 1700000000+g.r.IntN(1e8))))
	return hdr + "." + pl + "." + g.from(b64url, 43)
}

func (g gen) awsID() string {
	return g.pick("AKIA", "ASIA") + g.from(upper+"234567", 16)
}

func (g gen) privateKey() string {
	label := g.pick("RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY")
	var b strings.Builder
	b.WriteString("-----BEGIN " + label + "-----\n")
	for range 2 + g.r.IntN(4) {
		b.WriteString(g.from(b64, 64) + "\n")
	}
	b.WriteString(g.from(b64, 20) + "==\n-----END " + label + "-----")
	return b.String()
}

func (g gen) dbURL() string {
	scheme := g.pick("postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqp")
	host := g.pick("db.internal", "10.1.2.3", "prod-db.acme-bank.local", "cache.globex.io")
	return scheme + "://" + g.pick("app", "admin", "svc_reader") + ":" + g.from(alnum, 12) + "@" + host + ":" + fmt.Sprint(1000+g.r.IntN(9000)) + "/" + g.pick("ledger", "app", "0")
}

func (g gen) github() string {
	if g.r.IntN(4) == 0 {
		return "github_pat_" + g.from(alnum+"_", 82)
	}
	return g.pick("ghp_", "gho_", "ghs_", "ghu_") + g.from(alnum, 36)
}

func (g gen) apiKey() string {
	switch g.r.IntN(4) {
	case 0:
		return g.pick("sk_live_", "sk_test_") + g.from(alnum, 24)
	case 1:
		return "AIza" + g.from(b64url, 35)
	case 2:
		return "xoxb-" + g.digits(11) + "-" + g.from(alnum, 24)
	default:
		return g.from(alnum, 32)
	}
}

// hard writes a labelled value in a format the detectors are known to miss
// or only partly cover, so the measured recall is not only that of the
// formats they were written for.
func (g gen) hard(m *msg) {
	switch g.r.IntN(14) {
	case 8:
		f, l := strings.ToLower(g.pick(firstKnown...)), strings.ToLower(g.pick(surnames[:5]...))
		m.tmpl("write to %s. ", "EMAIL", f+" at "+l+" dot com")
	case 9:
		m.tmpl("Card %s on file. ", "CREDIT_CARD", strings.ReplaceAll(g.card(), "-", "."))
	case 10:
		m.tmpl("secret: %s\n", "AWS_KEY", g.from(b64, 40))
	case 11:
		m.tmpl("Mapped host %s replied. ", "IP_ADDRESS", "::ffff:"+g.ipv4())
	case 12:
		m.tmpl("SSN %s (spaces). ", "SSN", strings.ReplaceAll(g.ssn(), "-", " "))
	case 13:
		m.text("IMEI " + g.imei() + " registered. ")
	case 0:
		m.tmpl("Local line %s, ask for the desk. ", "PHONE", g.pick("555-0134", "0049 30 "+g.digits(7), "+1-415-555-"+g.digits(4), "415 555 "+g.digits(4)))
	case 1:
		m.tmpl("Deliver to %s. ", "POSTAL_ADDRESS", g.pick("Hauptstraße "+fmt.Sprint(1+g.r.IntN(99))+", 10115 Berlin", "221B Baker Street, London NW1 6XE", fmt.Sprint(1+g.r.IntN(99))+" rue de Rivoli, 75001 Paris"))
	case 2:
		m.tmpl("log in with %s and change it. ", "PASSWORD", g.password())
	case 3:
		m.tmpl("pass: %s\n", "PASSWORD", g.password())
	case 4:
		m.tmpl("cc %s on the thread. ", "PERSON_NAME", strings.ToLower(g.name()))
	case 5:
		m.tmpl("Owner: %s. ", "PERSON_NAME", g.pick(surnames...)+", "+g.pick(firstKnown...))
	case 6:
		m.tmpl("Ping %s about it. ", "PERSON_NAME", g.pick(firstUnknown...)+" "+g.pick(surnames...))
	default:
		m.tmpl("Server at %s:8443 answered. ", "IP_ADDRESS", g.ipv4())
	}
}

// positive writes one labelled value of a random type in a template.
func (g gen) positive(m *msg) {
	if g.r.IntN(12) == 0 {
		g.hard(m)
		return
	}
	switch g.r.IntN(14) {
	case 0:
		m.tmpl(g.pick("Reach me at %s if anything breaks. ", "Forwarding to %s for approval. ", "The invoice went to <%s>. "), "EMAIL", g.email())
	case 1:
		if g.r.IntN(5) == 0 {
			m.tmpl("SSN on file: %s. ", "SSN", strings.ReplaceAll(g.ssn(), "-", ""))
		} else {
			m.tmpl(g.pick("Customer SSN %s was verified. ", "Applicant: %s (social security). ", "Tax id %s attached. "), "SSN", g.ssn())
		}
	case 2:
		m.tmpl(g.pick("Charge card %s for the renewal. ", "Card number: %s, expires 09/28. ", "Refund to %s please. "), "CREDIT_CARD", g.card())
	case 3:
		if k := g.apiKey(); len(k) == 32 {
			m.tmpl(g.pick("export API_KEY=%s\n", "X-API-Key: %s\n", "the api key is %s. "), "API_KEY", k)
		} else {
			m.tmpl(g.pick("Use %s for the sandbox. ", "key=%s ", "Configured the integration with %s. "), "API_KEY", k)
		}
	case 4:
		m.tmpl(g.pick("Authorization: Bearer %s\n", "session token %s expired. ", "Pass %s in the header. "), "JWT", g.jwt())
	case 5:
		if g.r.IntN(2) == 0 {
			m.tmpl(g.pick("aws_access_key_id = %s\n", "Rotated key %s today. "), "AWS_KEY", g.awsID())
		} else {
			m.tmpl(g.pick("aws_secret_access_key = %s\n", "AWS secret: %s\n"), "AWS_KEY", g.from(b64, 40))
		}
	case 6:
		m.tmpl(g.pick("Call me on %s tomorrow. ", "Phone: %s. ", "The hotline is %s, open 24/7. "), "PHONE", g.phone())
	case 7:
		switch g.r.IntN(4) {
		case 0:
			m.tmpl(g.pick("Dr. %s approved the transfer. ", "Ms. %s will join. ", "Mr. %s signed. "), "PERSON_NAME", g.name())
		case 1:
			m.tmpl("Name: %s\n", "PERSON_NAME", g.name())
		case 2:
			m.tmpl("Regards, %s\n", "PERSON_NAME", g.name())
		default:
			m.tmpl(g.pick("I spoke with %s about the limits. ", "%s owns the runbook. ", "Ask %s for access. "), "PERSON_NAME", g.name())
		}
	case 8:
		v := g.ipv4()
		if g.r.IntN(4) == 0 {
			v = g.ipv6()
		}
		m.tmpl(g.pick("Traffic came from %s last night. ", "host %s is down. ", "Allow-list %s in the firewall. "), "IP_ADDRESS", v)
	case 9:
		m.tmpl(g.pick("Ship it to %s. ", "Billing address: %s\n", "The office moved to %s last month. "), "POSTAL_ADDRESS", g.address())
	case 10:
		m.tmpl(g.pick("password: %s\n", "pwd=%s ", "The password is %s so do not share it. ", "passphrase: \"%s\"\n"), "PASSWORD", g.password())
	case 11:
		m.tmpl("Here is the deploy key:\n%s\n", "PRIVATE_KEY", g.privateKey())
	case 12:
		m.tmpl(g.pick("DATABASE_URL=%s\n", "Connect with %s and run the migration. "), "DATABASE_URL", g.dbURL())
	default:
		m.tmpl(g.pick("GITHUB_TOKEN=%s\n", "Use %s to push the release. "), "GITHUB_TOKEN", g.github())
	}
}

// negative writes text that looks like PII and is not.
func (g gen) negative(m *msg) {
	u := g.from(hexd, 8) + "-" + g.from(hexd, 4) + "-4" + g.from(hexd, 3) + "-a" + g.from(hexd, 3) + "-" + g.from(hexd, 12)
	switch g.r.IntN(16) {
	case 0:
		m.text("Order " + g.notLuhn() + " shipped. ")
	case 1:
		m.text(g.pick("Upgrade to version ", "Firmware release ", "Build ") + fmt.Sprintf("%d.%d.%d.%d", 1+g.r.IntN(12), g.r.IntN(20), g.r.IntN(10), g.r.IntN(300)) + " fixes it. ")
	case 2:
		m.text("Request id " + u + " failed. ")
	case 3:
		m.text("sha256 " + g.from(hexd, 64) + " matches. ")
	case 4:
		m.text("Commit " + g.from(hexd, 40) + " reverted it. ")
	case 5:
		m.text(fmt.Sprintf("Due 2026-%02d-%02d at %02d:%02d:%02d UTC. ", 1+g.r.IntN(12), 1+g.r.IntN(28), g.r.IntN(24), g.r.IntN(60), g.r.IntN(60)))
	case 6:
		m.text("MAC " + g.from(hexd, 2) + ":" + g.from(hexd, 2) + ":" + g.from(hexd, 2) + ":" + g.from(hexd, 2) + ":" + g.from(hexd, 2) + ":" + g.from(hexd, 2) + " joined. ")
	case 7:
		m.text(fmt.Sprintf("Ticket %d-%02d-%04d reopened. ", 900+g.r.IntN(100), g.r.IntN(100), g.r.IntN(10000)))
	case 8:
		m.text(g.pick("The password is required for every login. ", "Password reset link sent. ", "password: ******** ", "Your password was changed. "))
	case 9:
		m.text(g.pick("Meeting on Monday with the Federation Team. ", "Thanks, Team. ", "The Bank of Springfield replied. ", "New York office is closed. "))
	case 10:
		m.text(fmt.Sprintf("Amount $%d,%03d.%02d booked to ledger %s. ", g.r.IntN(999), g.r.IntN(1000), g.r.IntN(100), g.digits(8)))
	case 11:
		m.text(g.pick("Token limit is 4096 per call. ", "The token expired. ", "Rotate the api key monthly. "))
	case 12:
		m.text("ISBN " + "978" + g.digits(10) + " is in stock. ")
	case 13:
		m.text(fmt.Sprintf("We processed %d records in %d.%d seconds across %d nodes. ", g.r.IntN(100000), g.r.IntN(60), g.r.IntN(10), 3+g.r.IntN(3)))
	case 14:
		m.text("See https://docs.example.com/v1/guide?page=" + fmt.Sprint(g.r.IntN(50)) + " for details. ")
	default:
		m.text(g.pick("Use std::vector and a::b in the C++ example. ", "Meet at the Austin Convention Center. ",
			"The Jordan Valley plant reported in. ", "Kelly Services sent the invoice. ", "Logan Airport was closed. ",
			"Room 12 is on the 3rd floor. ", "We shipped 250 Units this week. ", "Route 66 Diner Way is a song. "))
	}
}

func main() {
	out := flag.String("out", "client/pii/testdata/corpus.jsonl", "output file")
	n := flag.Int("n", 1400, "messages")
	seed := flag.Uint64("seed", 17, "random seed")
	flag.Parse()
	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := write(w, *n, *seed); err != nil {
		log.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

// write writes n messages generated from seed, one JSON object a line.
func write(w io.Writer, n int, seed uint64) error {
	g := gen{rand.New(rand.NewPCG(seed, 0x7f1ed))}
	enc := json.NewEncoder(w)
	for id := 1; id <= n; id++ {
		var m msg
		m.text(g.pick(filler...) + " ")
		positives := 1 + g.r.IntN(3)
		if id%4 == 0 {
			positives = 0 // a quarter of the messages carry only hard negatives
		}
		for k := 0; k < positives+2; k++ {
			switch {
			case k >= positives:
				g.negative(&m)
			case k > 0 || g.r.IntN(3) > 0:
				g.positive(&m)
			case g.r.IntN(2) == 0:
				g.positive(&m)
			default:
				g.negative(&m) // one first value in six is a hard negative instead
			}
			if g.r.IntN(2) == 0 {
				m.text(g.pick(filler...) + " ")
			}
		}
		if m.labels == nil {
			m.labels = []label{}
		}
		if err := enc.Encode(record{id, strings.TrimSpace(m.b.String()), m.labels}); err != nil {
			return err
		}
	}
	return nil
}
