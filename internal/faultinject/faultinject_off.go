//go:build !trustfed_faults

package faultinject

import "time"

// Enabled reports whether this is the fault-injecting test build.
const Enabled = false

// Now is the server's wall clock: time.Now in the production build.
func Now() time.Time { return time.Now() }

// DelayWrite is called before each Raft log or stable store write: nothing
// in the production build.
func DelayWrite() {}
