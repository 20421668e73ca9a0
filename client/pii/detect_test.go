package pii_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/pii"
)

// TestDetectors pins what each detector reports (type and value) and what
// it must not, one case per rule.
func TestDetectors(t *testing.T) {
	type hit struct {
		typ pii.Type
		val string
	}
	cases := []struct {
		name, text string
		want       []hit
	}{
		{"email", "mail ops+billing@acme-bank.co.uk now", []hit{{pii.Email, "ops+billing@acme-bank.co.uk"}}},
		{"spelled email", "write to jane.doe at example dot com", []hit{{pii.Email, "jane.doe at example dot com"}}},
		{"not an email", "meet at noon at the dot", nil},
		{"ssn", "SSN: 078-05-1120", []hit{{pii.SSN, "078-05-1120"}}},
		{"ssn bare after cue", "ssn 078051120", []hit{{pii.SSN, "078051120"}}},
		{"ssn invalid area", "ticket 666-12-3456 and 912-34-5678", nil},
		{"card luhn and brand", "pay 5555 5555 5555 4444 today", []hit{{pii.CreditCard, "5555 5555 5555 4444"}}},
		{"card with dots", "card 4111.1111.1111.1111", []hit{{pii.CreditCard, "4111.1111.1111.1111"}}},
		{"card failing luhn", "order 4111111111111112", nil},
		{"imei passes luhn, not a card", "IMEI 490154203237518", nil},
		{"jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nat-ure", []hit{{pii.JWT, "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_nat-ure"}}},
		{"jwt header without alg", "x eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.sig", nil},
		{"aws id", "id AKIAIOSFODNN7EXAMPLE", []hit{{pii.AWSKey, "AKIAIOSFODNN7EXAMPLE"}}},
		{"aws secret", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", []hit{{pii.AWSKey, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}},
		{"github", "ghs_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", []hit{{pii.GitHubToken, "ghs_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"}}},
		{"api key prefix", "use sk_live_4eC39HqLyjWDarjtT1zdp7dc", []hit{{pii.APIKey, "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}}},
		{"api key after keyword", "X-API-Key: 9f8e7d6c5b4a39281706f5e4d3c2b1a0", []hit{{pii.APIKey, "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}}},
		{"hex digest is not a key", "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", nil},
		{"uuid is not a key", "request 3f2a9c1e-8b7d-4e6f-a5c4-1d2e3f4a5b6c failed", nil},
		{"password", `passphrase: "correct horse 9!"`, []hit{{pii.Password, "correct horse 9!"}}},
		{"password is required", "The password is required.", nil},
		{"private key", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", []hit{{pii.PrivateKey, "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----"}}},
		{"public key is not private", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----", nil},
		{"db url", "DSN=mysql://root:hunter2@10.0.0.5:3306/app", []hit{{pii.DatabaseURL, "mysql://root:hunter2@10.0.0.5:3306/app"}}},
		{"web url is not a db url", "see https://example.com/db?x=1", nil},
		{"ipv4", "from 203.0.113.7:8443", []hit{{pii.IPAddress, "203.0.113.7"}}},
		{"ipv4 after a version word", "Upgrade to version 10.4.2.1 today", nil},
		{"version cue in the sentence before", "Read the release. host 15.182.181.191 is down", []hit{{pii.IPAddress, "15.182.181.191"}}},
		{"ipv6", "peer 2001:db8::8a2e:370:7334 up", []hit{{pii.IPAddress, "2001:db8::8a2e:370:7334"}}},
		{"ipv4 in ipv6", "mapped ::ffff:192.0.2.1 replied", []hit{{pii.IPAddress, "::ffff:192.0.2.1"}}},
		{"not ipv6", "at 12:30:45 with std::vector and MAC 00:1a:2b:3c:4d:5e", nil},
		{"two-group ipv6 is too likely code", "use a::b or fe::1", nil},
		{"phone e164", "call +44 20 7946 0958.", []hit{{pii.Phone, "+44 20 7946 0958"}}},
		{"phone us", "Phone: (415) 555-0134", []hit{{pii.Phone, "(415) 555-0134"}}},
		{"ten digits after a cue", "mobile: 4155550134", []hit{{pii.Phone, "4155550134"}}},
		{"ten digits alone", "ref 4155550134", nil},
		{"date is not a phone", "due 2026-12-07 at noon", nil},
		{"name after title", "Dr. Jane Smith signed", []hit{{pii.PersonName, "Jane Smith"}}},
		{"first name and surname", "I spoke with Priya Kowalski today", []hit{{pii.PersonName, "Priya Kowalski"}}},
		{"place is not a name", "The Bank of Springfield replied", nil},
		{"place named after someone", "Meet at the Austin Convention Center at noon", nil},
		{"address", "ship to 1600 Pennsylvania Avenue NW, Washington, DC 20500.", []hit{{pii.PostalAddress, "1600 Pennsylvania Avenue NW, Washington, DC 20500"}}},
		{"uk address", "221B Baker Street, London NW1 6XE", []hit{{pii.PostalAddress, "221B Baker Street, London NW1 6XE"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []hit
			for _, f := range pii.Scan(tc.text) {
				got = append(got, hit{f.Type, f.Value(tc.text)})
			}
			require.Equal(t, tc.want, got)
		})
	}
}
