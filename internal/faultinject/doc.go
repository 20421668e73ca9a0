// Package faultinject is the hook the fault tests (system_test, build tag
// trustfed_faults) use to move one server's wall clock and slow its Raft
// log writes. In the production build (no tag) Now is time.Now and
// DelayWrite does nothing: both compile to the plain calls.
//
// With the tag:
//
//   - Now is time.Now() plus an offset read from the file named by
//     TRUSTFED_FAULT_CLOCK_FILE ("+30s", "-45s", "0"; a Go duration, an
//     empty or missing file is 0). The monotonic reading is stripped, so
//     comparisons between two stamps see the jump, as with a real clock
//     step; timers and time.Since on values taken from time.Now (Raft's
//     election and heartbeat timers among them) do not.
//   - DelayWrite sleeps for the duration in the file named by
//     TRUSTFED_FAULT_FSYNC_DELAY_FILE ("100ms"; 0 or no file: none). The
//     Raft log and stable store call it before every write (StoreLogs,
//     Set, ...): a disk whose fsync takes that long.
//
// The files are re-read at most every 50 ms (on the caller's goroutine, no
// background work), so a test changes a node's clock or disk speed by
// rewriting its file.
package faultinject
