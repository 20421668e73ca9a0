//go:build trustfed_faults

package faultinject

import (
	"os"
	"strings"
	"sync"
	"time"
)

// Enabled reports whether this is the fault-injecting test build.
const Enabled = true

// rereadEvery bounds how stale a file's value may be.
const rereadEvery = 50 * time.Millisecond

// Now is time.Now() plus the offset in $TRUSTFED_FAULT_CLOCK_FILE.
func Now() time.Time {
	now := time.Now()
	if d := clockOffset.get(now); d != 0 {
		return now.Round(0).Add(d)
	}
	return now
}

// DelayWrite sleeps for the delay in $TRUSTFED_FAULT_FSYNC_DELAY_FILE.
func DelayWrite() {
	if d := writeDelay.get(time.Now()); d > 0 {
		time.Sleep(d)
	}
}

var (
	clockOffset = &fileDuration{path: os.Getenv("TRUSTFED_FAULT_CLOCK_FILE")}
	writeDelay  = &fileDuration{path: os.Getenv("TRUSTFED_FAULT_FSYNC_DELAY_FILE")}
)

// fileDuration is a duration read from a file, re-read at most every
// rereadEvery. A file that is missing or does not parse means 0.
type fileDuration struct {
	path string

	mu     sync.Mutex
	readAt time.Time
	value  time.Duration
}

func (f *fileDuration) get(now time.Time) time.Duration {
	if f.path == "" {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.readAt.IsZero() && now.Sub(f.readAt) < rereadEvery {
		return f.value
	}
	f.readAt = now
	f.value = 0
	if b, err := os.ReadFile(f.path); err == nil {
		if d, err := time.ParseDuration(strings.TrimPrefix(strings.TrimSpace(string(b)), "+")); err == nil {
			f.value = d
		}
	}
	return f.value
}
