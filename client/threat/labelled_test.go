package threat_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/client/threat"
)

type labelled struct {
	ID        int    `json:"id"`
	Direction string `json:"direction"`
	Label     string `json:"label"`
	Category  string `json:"category"`
	Body      string `json:"body"`
}

func loadSet(t *testing.T, path string) []labelled {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []labelled
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l labelled
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l))
		out = append(out, l)
	}
	require.NoError(t, sc.Err())
	return out
}

type confusion struct{ tp, fp, fn, tn int }

func (c confusion) precision() float64 { return ratio(c.tp, c.tp+c.fp) }
func (c confusion) recall() float64    { return ratio(c.tp, c.tp+c.fn) }

func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

// measure runs the default gate on a set and returns the block/allow
// confusion overall, and per label/category the share of messages blocked.
func measure(t *testing.T, set []labelled, verbose bool) (confusion, string) {
	g := threat.NewRuleGate(threat.Config{})
	var all confusion
	type agg struct{ n, blocked int }
	byCat := map[string]*agg{}
	for _, m := range set {
		dir := threat.Inbound
		if m.Direction == "outbound" {
			dir = threat.Outbound
		}
		v := g.Inspect(context.Background(), threat.Message{Direction: dir, Body: m.Body})
		attack := m.Label != "benign"
		switch {
		case attack && !v.Allow:
			all.tp++
		case attack:
			all.fn++
		case !v.Allow:
			all.fp++
		default:
			all.tn++
		}
		if verbose && attack == v.Allow {
			fmt.Printf("MISS #%d %s/%s %v %.80q\n", m.ID, m.Label, m.Category, v, m.Body)
		}
		k := m.Label + " / " + m.Category
		if byCat[k] == nil {
			byCat[k] = &agg{}
		}
		byCat[k].n++
		if !v.Allow {
			byCat[k].blocked++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d messages: precision %.3f, recall %.3f (blocked attacks %d, missed %d, blocked benign %d, allowed benign %d)\n",
		len(set), all.precision(), all.recall(), all.tp, all.fn, all.fp, all.tn)
	fmt.Fprintf(&b, "| label / category | messages | blocked |\n|---|---:|---:|\n")
	keys := make([]string, 0, len(byCat))
	for k := range byCat {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %d | %d |\n", k, byCat[k].n, byCat[k].blocked)
	}
	return all, b.String()
}

// TestLabelledSets measures the default gate on the synthetic set and the
// hand-written hard cases and prints the tables docs/pii.md quotes:
//
//	go test -run TestLabelledSets -v ./client/threat/
func TestLabelledSets(t *testing.T) {
	verbose := os.Getenv("THREAT_VERBOSE") != ""
	gen, table := measure(t, loadSet(t, "testdata/messages.jsonl"), verbose)
	t.Log("synthetic set (testdata/messages.jsonl)\n" + table)
	require.GreaterOrEqual(t, gen.precision(), 0.95)
	require.GreaterOrEqual(t, gen.recall(), 0.95)

	hard, table := measure(t, loadSet(t, "testdata/hard.jsonl"), verbose)
	t.Log("hand-written hard cases (testdata/hard.jsonl)\n" + table)
	// Floors at what the rules reach today; the misses are listed in docs/pii.md.
	require.GreaterOrEqual(t, hard.precision(), hardFloor.precision)
	require.GreaterOrEqual(t, hard.recall(), hardFloor.recall)
}

var hardFloor = struct{ precision, recall float64 }{0.78, 0.75}
