//go:build trustfed_faults

package faultinject

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestFileDurationFollowsTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	f := &fileDuration{path: path}
	now := time.Now()
	if d := f.get(now); d != 0 {
		t.Fatalf("missing file: %s, want 0", d)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		text string
		want time.Duration
	}{{"+30s\n", 30 * time.Second}, {"-45s", -45 * time.Second}, {"0", 0}, {"100ms", 100 * time.Millisecond}, {"soon", 0}} {
		write(c.text)
		at := now.Add(time.Duration(i+1) * rereadEvery)
		if d := f.get(at); d != c.want {
			t.Fatalf("%q: %s, want %s", c.text, d, c.want)
		}
	}
	// Within rereadEvery of the last read the old value holds.
	write("1h")
	last := now.Add(5 * rereadEvery)
	if d := f.get(last.Add(rereadEvery / 2)); d != 0 {
		t.Fatalf("re-read too soon: %s", d)
	}
}

func TestNowAddsTheOffset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	if err := os.WriteFile(path, []byte("+30s"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := clockOffset
	clockOffset = &fileDuration{path: path}
	t.Cleanup(func() { clockOffset = old })
	if d := Now().Sub(time.Now()); d < 29*time.Second || d > 31*time.Second {
		t.Fatalf("Now() is %s from time.Now(), want about 30s", d)
	}
}
