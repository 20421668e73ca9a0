package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mdLink matches a relative Markdown link target: [text](path#anchor).
var mdLink = regexp.MustCompile(`\]\(([^)\s:]+?\.md)(#[^)\s]*)?\)`)

// anchorOf is GitHub's anchor of a heading: lower case, punctuation but
// hyphens and underscores dropped, spaces as hyphens.
func anchorOf(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func headings(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			out[anchorOf(strings.TrimLeft(h, "#"))] = true
		}
	}
	return out
}

// TestDocsLinksResolve: every relative link between the project's Markdown
// files names a file that exists and, with an anchor, a heading of it (the
// security model's "backups" point to docs/operations.md#backup-and-restore,
// which must exist: issue 20, defect 13).
func TestDocsLinksResolve(t *testing.T) {
	files, err := filepath.Glob("../../docs/*.md")
	require.NoError(t, err)
	files = append(files, "../../README.md", "../../deploy/README.md")
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
			target := filepath.Join(filepath.Dir(f), m[1])
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, m[1])
				continue
			}
			if m[2] != "" && !headings(t, target)[strings.TrimPrefix(m[2], "#")] {
				t.Errorf("%s links to %s%s: no such heading", f, m[1], m[2])
			}
		}
	}
	sec, err := os.ReadFile("../../docs/security.md")
	require.NoError(t, err)
	require.Contains(t, string(sec), "operations.md#backup-and-restore")
}
