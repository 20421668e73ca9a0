package testutil

import (
	"errors"
	"testing"
	"time"
)

type permanentError struct{ error }

// Permanent wraps an error that makes Eventually fail at once.
func Permanent(err error) error { return permanentError{err} }

// Eventually calls cond until it returns nil, failing the test if the
// deadline passes first (or cond returns a Permanent error). It polls with a
// short backoff: it waits on a condition, not for a fixed time.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		var p permanentError
		if errors.As(err, &p) {
			t.Fatalf("%s: %v", what, p.error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 200*time.Millisecond)
	}
}
