package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo: tasks go through before the revocation, and
// after it both organisations' next messages are refused.
func TestDemo(t *testing.T) {
	var buf bytes.Buffer
	out = &buf
	t.Cleanup(func() { out = os.Stdout })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(ctx, false, 4); err != nil {
		t.Fatalf("demo: %v\n%s", err, buf.String())
	}
	got := buf.String()
	for _, want := range []string{
		`acme-bank   sent "task 2: reconcile ledger batch 1002", answer "done: task 2`,
		"acme-bank   registry event EVENT_KIND_REVOCATION about globex-ins",
		`acme-bank   REFUSED to send "task 3: reconcile ledger batch 1003": gateway refused (DECISION_DENIED)`,
		"globex-ins  REFUSED: its message to acme-bank",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the demo did not print %q:\n%s", want, got)
		}
	}
}
