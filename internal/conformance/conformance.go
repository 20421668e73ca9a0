// Package conformance checks docs/conformance.md, the matrix of the
// federation protocol's requirements, test criteria, failure scenarios,
// evidence artefacts and plugin capabilities: every row that must be there
// is there, its status is one of three words, and every test it cites
// exists as a function in the package directory (and file) it names.
//
// The matrix is every Markdown table whose first header cell is "id". In a
// row, the first cell is the id, the third the status, and a test is cited as
//
//	`registry/policy.TestTC1EffectiveLevelIsMinimum` (decide_test.go)
//
// that is, the package directory relative to the repository root, a dot,
// the function name (Test, Benchmark or Fuzz), and optionally the file that
// declares it in parentheses. Functions are found by parsing the
// directory's *_test.go files, so a name in a comment does not count.
package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// Statuses a row may have.
const (
	StatusMet       = "met"
	StatusPartlyMet = "partly met"
	StatusNotYet    = "not yet"
)

// Required is the id of every row the matrix must have: the protocol's
// requirements, test criteria, failure scenarios and evidence artefacts.
var Required = []string{
	"R1", "R2", "R3", "R4", "R5", "R6", "R7", "R8",
	"TC1", "TC2", "TC3", "TC4", "TC5", "TC6", "TC7",
	"A", "B", "C",
	"E01", "E02", "E03", "E04", "E05", "E06", "E07",
}

// ErrMatrix is wrapped by every problem Parse and Check report.
var ErrMatrix = errors.New("conformance matrix")

// TestRef is one test a row cites.
type TestRef struct {
	Dir  string // package directory, relative to the repository root, slash-separated
	Name string // function name
	File string // the *_test.go file that declares it; empty when the row does not say
}

func (r TestRef) String() string { return r.Dir + "." + r.Name }

// Row is one row of the matrix.
type Row struct {
	Line   int // 1-based line in the document
	ID     string
	Status string
	Tests  []TestRef
}

const statusColumn = 2

var testRefRE = regexp.MustCompile("`([a-z0-9_]+(?:/[a-z0-9_]+)*)\\.((?:Test|Benchmark|Fuzz)[A-Za-z0-9_]*)`(?:\\s*\\(([A-Za-z0-9_]+_test\\.go)\\))?")

// Parse returns the rows of every matrix table in md.
func Parse(md []byte) ([]Row, error) {
	var rows []Row
	inTable, inMatrix, width := false, false, 0
	sc := bufio.NewScanner(bytes.NewReader(md))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			inTable = false
			continue
		}
		cells := splitRow(line)
		if !inTable { // a table's first line is its header
			inTable, inMatrix, width = true, strings.EqualFold(cells[0], "id"), len(cells)
			if inMatrix && width <= statusColumn {
				return nil, fmt.Errorf("%w: line %d: the header has %d cells, want at least %d", ErrMatrix, n, width, statusColumn+1)
			}
			continue
		}
		if !inMatrix || isSeparator(cells) {
			continue
		}
		if len(cells) != width {
			return nil, fmt.Errorf("%w: line %d: %d cells, the header has %d", ErrMatrix, n, len(cells), width)
		}
		row := Row{Line: n, ID: strings.Trim(cells[0], "*`"), Status: cells[statusColumn]}
		for _, m := range testRefRE.FindAllStringSubmatch(line, -1) {
			row.Tests = append(row.Tests, TestRef{Dir: m[1], Name: m[2], File: m[3]})
		}
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: read: %w", ErrMatrix, err)
	}
	return rows, nil
}

// splitRow splits a table line into trimmed cells, without the outer pipes.
func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	cells := strings.Split(line, "|")
	for i, c := range cells {
		cells[i] = strings.TrimSpace(c)
	}
	return cells
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, ":-") != "" {
			return false
		}
	}
	return true
}

// Check reports every problem of rows against the repository at root: a
// required row missing, an id twice, a status that is not one of the three,
// a met or partly met row that cites no test, and a cited test that its
// directory (or file) does not declare.
func Check(root string, rows []Row) []error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrMatrix}, args...)...))
	}
	seen := map[string]int{}
	funcs := map[string]map[string]string{} // dir → function → file
	for _, r := range rows {
		if prev, ok := seen[r.ID]; ok {
			fail("line %d: row %q already on line %d", r.Line, r.ID, prev)
		}
		seen[r.ID] = r.Line
		switch r.Status {
		case StatusMet, StatusPartlyMet:
			if len(r.Tests) == 0 {
				fail("line %d: row %q is %s but cites no test", r.Line, r.ID, r.Status)
			}
		case StatusNotYet:
		default:
			fail("line %d: row %q: status %q is not %q, %q or %q", r.Line, r.ID, r.Status, StatusMet, StatusPartlyMet, StatusNotYet)
		}
		for _, t := range r.Tests {
			declared, ok := funcs[t.Dir]
			if !ok {
				var err error
				if declared, err = testFuncs(root, t.Dir); err != nil {
					fail("line %d: row %q: %s: %v", r.Line, r.ID, t, err)
					continue
				}
				funcs[t.Dir] = declared
			}
			file, ok := declared[t.Name]
			switch {
			case !ok:
				fail("line %d: row %q: %s: no func %s in %s/*_test.go", r.Line, r.ID, t, t.Name, t.Dir)
			case t.File != "" && t.File != file:
				fail("line %d: row %q: %s is declared in %s, not %s", r.Line, r.ID, t, file, t.File)
			}
		}
	}
	for _, id := range Required {
		if _, ok := seen[id]; !ok {
			fail("no row %q", id)
		}
	}
	return errs
}

// testFuncs parses dir's *_test.go files and returns their top-level
// functions (not methods) by name, with the file that declares each.
func testFuncs(root, dir string) (map[string]string, error) {
	if path.Clean(dir) != dir || strings.HasPrefix(dir, "../") || dir == ".." {
		return nil, fmt.Errorf("directory %q is not a clean path inside the repository", dir)
	}
	abs := filepath.Join(root, filepath.FromSlash(dir))
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("read package directory: %w", err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(abs, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
				out[fn.Name.Name] = e.Name()
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no test functions in %s", dir)
	}
	return out, nil
}
