package consensus

import (
	"errors"
	"io"
	"log/slog"
	"testing"
)

// A failed write sets the storage fault; a small write that succeeds does
// not clear it, a log append that succeeds does.
func TestWatchedStoreFault(t *testing.T) {
	s := &watchedStore{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if s.Fault() != nil {
		t.Fatal("fault before any write")
	}
	full := errors.New("write raft.db: no space left on device")
	if err := s.note(full, true); !errors.Is(err, full) {
		t.Fatalf("note returned %v", err)
	}
	if !errors.Is(s.Fault(), full) {
		t.Fatalf("fault %v, want %v", s.Fault(), full)
	}
	_ = s.note(nil, false) // e.g. a vote written in a page the file has
	if !errors.Is(s.Fault(), full) {
		t.Fatal("a stable-store write cleared the fault")
	}
	_ = s.note(nil, true)
	if s.Fault() != nil {
		t.Fatalf("fault %v after a successful append", s.Fault())
	}
}
