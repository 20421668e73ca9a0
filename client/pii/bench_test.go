package pii_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client/pii"
)

// benchMessage is a 1.5 KiB message with a realistic mix of prose and PII.
var benchMessage = func() string {
	parts := []string{
		"Hi team, following up on the reconciliation for the settlement window that closed at noon. ",
		"Customer Dr. Jane Smith (jane.smith@example.com, +1 415 555 2671) disputed a charge on card 4111 1111 1111 1111. ",
		"The agent pulled the ledger from postgres://svc_reader:Zq8vW2mK4pXr@db.internal:5432/ledger and found two entries. ",
		"Traffic came from 203.0.113.7 and 2001:db8:85a3::8a2e:370:7334 during the incident; version 4.2.1.0 had the fix. ",
		"Please do not forward the token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZ2VudC0xIn0.c2lnbmF0dXJlLXZhbHVlLWhlcmU to anyone. ",
		"Order 1234567812345678 shipped to 1600 Pennsylvania Avenue NW, Washington, DC 20500 on Tuesday. ",
		"The request id 3f2a9c1e-8b7d-4e6f-a5c4-1d2e3f4a5b6c failed with commit 9fceb02d0ae598e95dc970b74767f19372d61af8. ",
	}
	var b strings.Builder
	for b.Len() < 1536 {
		for _, p := range parts {
			if b.Len()+len(p) > 1536 {
				b.WriteString(strings.Repeat(" ", 1536-b.Len()))
				break
			}
			b.WriteString(p)
		}
	}
	return b.String()
}()

var benchPolicy = pii.Policy{pii.Email: pii.ActionHash, pii.Phone: pii.ActionRedact, pii.CreditCard: pii.ActionRedact,
	pii.PersonName: pii.ActionHash, pii.DatabaseURL: pii.ActionRedact, pii.JWT: pii.ActionRedact, pii.IPAddress: pii.ActionHash,
	pii.PostalAddress: pii.ActionRedact}

// BenchmarkScanApply is Scan+Apply of a 1.5 KiB message:
//
//	go test -run '^$' -bench 'ScanApply' -benchmem ./client/pii/
func BenchmarkScanApply(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchMessage)))
	for b.Loop() {
		if _, err := pii.Apply(benchMessage, benchPolicy, testKey); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanApplyLatency times every call and reports the p50 and p99
// of the distribution (the target is p99 ≤ 50 µs).
func BenchmarkScanApplyLatency(b *testing.B) {
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := pii.Apply(benchMessage, benchPolicy, testKey); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds()), "p99-ns")
}

// adversarial are 256 KiB texts built to make a detector rescan the rest of
// the text at every match if it could; their cost must stay proportional
// to their length.
var adversarial = map[string]string{
	"findings":  strings.Repeat("a@b.co 10.1.2.3 ", 16<<10),
	"pem":       strings.Repeat("-----BEGIN PRIVATE KEY-----", 10<<10),
	"db urls":   strings.Repeat("postgres://", 24<<10),
	"passwords": strings.Repeat("password:", 29<<10),
	"jwt":       strings.Repeat("eyJ.", 64<<10),
	"digits":    strings.Repeat("1 ", 128<<10),
}

// BenchmarkScanAdversarial: go test -run '^$' -bench Adversarial ./client/pii/
func BenchmarkScanAdversarial(b *testing.B) {
	for name, text := range adversarial {
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				pii.Scan(text)
			}
		})
	}
}
