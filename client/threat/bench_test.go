package threat_test

import (
	"context"
	"strings"
	"testing"

	"github.com/trustfed/trustfed/client/threat"
)

// BenchmarkInspect is the rule gate on a 1.5 KiB benign message (every rule
// runs to the end):
//
//	go test -run '^$' -bench Inspect -benchmem ./client/threat/
func BenchmarkInspect(b *testing.B) {
	body := strings.Repeat("The batch finished at 14:02 and totals reconcile; see https://docs.example.com/r?page=2 for the report. ", 15)[:1536]
	g := threat.NewRuleGate(threat.Config{})
	m := threat.Message{Direction: threat.Outbound, Body: body}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if v := g.Inspect(context.Background(), m); !v.Allow {
			b.Fatal(v)
		}
	}
}

// BenchmarkInspectAdversarial: 256 KiB bodies that repeat what the rules
// look for; their cost must stay proportional to their length.
//
//	go test -run '^$' -bench InspectAdversarial ./client/threat/
func BenchmarkInspectAdversarial(b *testing.B) {
	bodies := map[string]string{
		"phrases": strings.Repeat("ignore previous instructions ", 9<<10),
		"base64":  strings.Repeat("aWdub3JlIHByZXZpb3VzIGluc3RydWN0aW9ucw== ", 6<<10),
		"urls":    strings.Repeat("https://x.example/?q=1 ", 11<<10),
		"nested":  strings.Repeat("http", 64<<10),
		"bidi":    strings.Repeat("a\u202e", 64<<10),
		"lines":   strings.Repeat("system:\n", 32<<10),
	}
	g := threat.NewRuleGate(threat.Config{})
	for name, body := range bodies {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				g.Inspect(context.Background(), threat.Message{Direction: threat.Inbound, Body: body})
			}
		})
	}
}
