package main

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

// deploy/README.md promises that the walk-through works against the Docker
// cluster with the exports `cluster.sh up` prints (issue 20, defect 11):
// the exports it shows are the ones the script prints, they include an
// admin approval key, `up` enrols the two admins, and both say how the
// second admin approves. `make docker-cluster-test` runs the flow itself.
func TestDeployREADMEMatchesClusterScript(t *testing.T) {
	readme, err := os.ReadFile("../../deploy/README.md")
	require.NoError(t, err)
	script, err := os.ReadFile("../../deploy/cluster.sh")
	require.NoError(t, err)
	exports := regexp.MustCompile(`(?m)^export (TRUSTFED_[A-Z_]+)=`)
	names := func(b []byte) []string {
		var out []string
		for _, m := range exports.FindAllSubmatch(b, -1) {
			out = append(out, string(m[1]))
		}
		return out
	}
	printExports := regexp.MustCompile(`(?s)print_exports\(\) \{\n\tcat <<EOF\n(.*?)\nEOF`).FindSubmatch(script)
	require.Len(t, printExports, 2, "cluster.sh has print_exports")
	want := names(printExports[1])
	require.Contains(t, want, "TRUSTFED_ADMIN_KEY")
	require.Equal(t, want, names(readme), "deploy/README.md shows the exports cluster.sh prints")
	for _, b := range [][]byte{printExports[1], readme} {
		require.Regexp(t, `admin approve CHG_ID --admin-key \S*(\$ADMINS|/data/admins)/bob\.key`, string(b))
	}
	up := regexp.MustCompile(`(?s)\ncmd_up\(\) \{\n(.*?)\n\}\n`).FindSubmatch(script)
	require.Len(t, up, 2)
	require.Contains(t, string(up[1]), "\tenrol_admins\n", "up enrols the admins")
}
