package conformance

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const (
	repoRoot   = "../.."
	matrixPath = repoRoot + "/docs/conformance.md"
)

func readMatrix(t *testing.T) string {
	t.Helper()
	md, err := os.ReadFile(matrixPath)
	require.NoError(t, err)
	return string(md)
}

// TestConformanceMatrix: docs/conformance.md has a row for every
// requirement, test criterion, scenario and evidence artefact, and every
// test it cites exists where it says.
func TestConformanceMatrix(t *testing.T) {
	rows, err := Parse([]byte(readMatrix(t)))
	require.NoError(t, err)
	for _, err := range Check(repoRoot, rows) {
		t.Error(err)
	}
	cited := 0
	for _, r := range rows {
		cited += len(r.Tests)
	}
	require.Greater(t, cited, len(Required), "the matrix cites fewer tests than it has required rows")
}

// withLine returns md with the line that starts with prefix replaced by
// edit(line); edit returning "" removes it.
func withLine(t *testing.T, md, prefix string, edit func(string) string) string {
	t.Helper()
	lines := strings.Split(md, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			if e := edit(l); e != "" {
				lines[i] = e
			} else {
				lines = append(lines[:i], lines[i+1:]...)
			}
			return strings.Join(lines, "\n")
		}
	}
	t.Fatalf("no line starts with %q", prefix)
	return ""
}

// TestOnlyInAComment is cited below: a name in a comment is not a test.

// Each way a matrix can be wrong is reported, naming the row and what is
// wrong; the real matrix, edited once, is the input.
func TestCheckRefusesBrokenMatrices(t *testing.T) {
	md := readMatrix(t)
	tc1 := "`registry/policy.TestTC1EffectiveLevelIsMinimum`"
	require.Contains(t, md, tc1)
	anyTest := regexp.MustCompile(testRefRE.String())
	tests := []struct {
		name string
		md   string
		want string
	}{
		{"a test that does not exist",
			strings.Replace(md, tc1, "`registry/policy.TestTC1NoSuchTest`", 1),
			`registry/policy.TestTC1NoSuchTest: no func TestTC1NoSuchTest in registry/policy/*_test.go`},
		{"a name that is only in a comment",
			strings.Replace(md, tc1, "`internal/conformance.TestOnlyInAComment`", 1),
			`no func TestOnlyInAComment in internal/conformance/*_test.go`},
		{"the wrong file",
			strings.Replace(md, tc1+" (decide_test.go)", tc1+" (resolve_test.go)", 1),
			`registry/policy.TestTC1EffectiveLevelIsMinimum is declared in decide_test.go, not resolve_test.go`},
		{"a package directory that does not exist",
			strings.Replace(md, tc1, "`registry/nosuch.TestTC1EffectiveLevelIsMinimum`", 1),
			`registry/nosuch.TestTC1EffectiveLevelIsMinimum: read package directory`},
		{"a missing requirement row", withLine(t, md, "| R5 |", func(string) string { return "" }), `no row "R5"`},
		{"a missing test criterion row", withLine(t, md, "| TC4 |", func(string) string { return "" }), `no row "TC4"`},
		{"a missing scenario row", withLine(t, md, "| C |", func(string) string { return "" }), `no row "C"`},
		{"a missing evidence row", withLine(t, md, "| E07 |", func(string) string { return "" }), `no row "E07"`},
		{"a row twice", withLine(t, md, "| R1 |", func(l string) string { return l + "\n" + l }), `row "R1" already on line`},
		{"an unknown status",
			withLine(t, md, "| R1 |", func(l string) string { return strings.Replace(l, "| met |", "| done |", 1) }),
			`row "R1": status "done"`},
		{"met without a test",
			withLine(t, md, "| R2 |", func(l string) string { return anyTest.ReplaceAllString(l, "") }),
			`row "R2" is met but cites no test`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NotEqual(t, md, tt.md, "the edit changed nothing")
			rows, err := Parse([]byte(tt.md))
			require.NoError(t, err)
			errs := Check(repoRoot, rows)
			require.Len(t, errs, 1, "%v", errs)
			require.True(t, errors.Is(errs[0], ErrMatrix))
			require.ErrorContains(t, errs[0], tt.want)
		})
	}
}

func TestParse(t *testing.T) {
	md := "intro\n\n| id | requires | status | code | tests |\n|---|---|---|---|---|\n" +
		"| **R1** | x | met | `a/b.go` | `a/b.TestX` (b_test.go), `a.BenchmarkY` |\n" +
		"| R2 | y | not yet | — | — |\n\n" +
		"| other | table |\n|---|---|\n| R9 | `a.TestZ` |\n"
	rows, err := Parse([]byte(md))
	require.NoError(t, err)
	require.Equal(t, []Row{
		{Line: 5, ID: "R1", Status: StatusMet, Tests: []TestRef{{Dir: "a/b", Name: "TestX", File: "b_test.go"}, {Dir: "a", Name: "BenchmarkY"}}},
		{Line: 6, ID: "R2", Status: StatusNotYet},
	}, rows)

	_, err = Parse([]byte("| id | requires |\n|---|---|\n| R1 | short |\n"))
	require.ErrorIs(t, err, ErrMatrix)
	_, err = Parse([]byte("| id | requires | status |\n|---|---|---|\n| R1 | a | b | met |\n"))
	require.ErrorContains(t, err, "line 3: 4 cells, the header has 3")
}
