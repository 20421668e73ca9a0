// Package system_test drives real trustfed server processes: a dev server
// over REST and the CLI, and a three-node cluster over loopback TCP with
// mutual TLS between the nodes.
package system_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"github.com/trustfed/trustfed/internal/testutil"
)

// bin is the trustfed binary built for this test run, in binDir.
var bin, binDir string

// forgeBin is a trustfed binary built with the trustfed_forge tag: a
// compromised node that forges decisions (registry/forge_on.go). Built on
// first use, once per run.
func forgeBin(t testing.TB) string {
	t.Helper()
	forge.once.Do(func() { forge.path, forge.err = testutil.BuildBinaryTags(binDir, "trustfed-forge", "trustfed_forge") })
	if forge.err != nil {
		t.Fatal(forge.err)
	}
	return forge.path
}

// faultsBin is a trustfed binary built with the trustfed_faults tag: its
// wall clock and Raft store write latency follow files the test writes
// (internal/faultinject). Built on first use, once per run.
func faultsBin(t testing.TB) string {
	t.Helper()
	faultsBuild.once.Do(func() {
		faultsBuild.path, faultsBuild.err = testutil.BuildBinaryTags(binDir, "trustfed-faults", "trustfed_faults")
	})
	if faultsBuild.err != nil {
		t.Fatal(faultsBuild.err)
	}
	return faultsBuild.path
}

var faultsBuild struct {
	once sync.Once
	path string
	err  error
}

var forge struct {
	once sync.Once
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trustfed-system-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
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
