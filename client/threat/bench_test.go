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
