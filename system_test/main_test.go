// Package system_test drives real trustfed server processes: a dev server
// over REST and the CLI, and a three-node cluster over loopback TCP with
// mutual TLS between the nodes.
package system_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/trustfed/trustfed/internal/testutil"
)

// bin is the trustfed binary built for this test run.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trustfed-system-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = testutil.BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
