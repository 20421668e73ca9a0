//go:build !trustfed_faults

package faultinject

import (
	"testing"
	"time"
)

// The production build: the real clock, no delay, whatever the
// environment says.
func TestProductionBuildInjectsNothing(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("TRUSTFED_FAULT_CLOCK_FILE", dir+"/clock")
	t.Setenv("TRUSTFED_FAULT_FSYNC_DELAY_FILE", dir+"/fsync")
	if Enabled {
		t.Fatal("Enabled without the trustfed_faults tag")
	}
	before := time.Now()
	got := Now()
	if got.Before(before) || got.Sub(before) > time.Second {
		t.Fatalf("Now() = %v, want about %v", got, before)
	}
	start := time.Now()
	DelayWrite()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("DelayWrite took %s", d)
	}
}
