package faults

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

var start = State{{Name: "a0", Level: 3}, {Name: "b0", Level: 3}}

func op(client int, in Input, call, ret int64, out Output) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func TestCheckAcceptsALinearizableHistory(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, Input{Kind: OpRename, Org: 0, Name: "a1"}, 0, 10, Output{}),
		// Concurrent with the rename: either value.
		op(1, Input{Kind: OpRead, Org: 0}, 5, 8, Output{Name: "a0", Level: 3}),
		op(1, Input{Kind: OpRead, Org: 0}, 11, 12, Output{Name: "a1", Level: 3}),
		op(2, Input{Kind: OpSetLevel, Org: 1, Level: 2}, 13, 20, Output{}),
		op(0, Input{Kind: OpCheck}, 21, 22, Output{Level: 2}),
	}
	if err := Check(t.Name(), 1, start, ops, 10*time.Second, t.TempDir()); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFindsAStaleRead(t *testing.T) {
	dir := t.TempDir()
	ops := []porcupine.Operation{
		op(0, Input{Kind: OpRename, Org: 0, Name: "a1"}, 0, 10, Output{}),
		// Invoked after the rename was acknowledged, yet the old name.
		op(1, Input{Kind: OpRead, Org: 0}, 11, 12, Output{Name: "a0", Level: 3}),
	}
	err := Check(t.Name(), 42, start, ops, 10*time.Second, dir)
	if !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("want ErrNotLinearizable, got %v", err)
	}
	saved, _ := filepath.Glob(filepath.Join(dir, "*-seed42-*", "*"))
	if len(saved) != 2 {
		t.Fatalf("want history.json and visualization.html saved, got %v", saved)
	}
	for _, f := range saved {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Fatalf("%s empty: %v", f, err)
		}
	}
}

func TestCheckFindsAStaleCheck(t *testing.T) {
	ops := []porcupine.Operation{
		op(0, Input{Kind: OpSetLevel, Org: 1, Level: 1}, 0, 10, Output{}),
		op(1, Input{Kind: OpCheck}, 11, 12, Output{Level: 3}),
	}
	if err := Check(t.Name(), 7, start, ops, 10*time.Second, t.TempDir()); !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("want ErrNotLinearizable, got %v", err)
	}
}

// A write whose outcome is unknown may take effect late or never, but a
// value nobody wrote is still a violation.
func TestCheckHandlesUnknownWrites(t *testing.T) {
	unknown := op(0, Input{Kind: OpRename, Org: 0, Name: "a1"}, 0, math.MaxInt64, Output{Unknown: true})
	never := []porcupine.Operation{unknown, op(1, Input{Kind: OpRead, Org: 0}, 20, 21, Output{Name: "a0", Level: 3})}
	late := []porcupine.Operation{unknown,
		op(1, Input{Kind: OpRead, Org: 0}, 20, 21, Output{Name: "a0", Level: 3}),
		op(1, Input{Kind: OpRead, Org: 0}, 30, 31, Output{Name: "a1", Level: 3})}
	for name, ops := range map[string][]porcupine.Operation{"never applied": never, "applied late": late} {
		if err := Check(name, 1, start, ops, 10*time.Second, t.TempDir()); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Once seen, it cannot be unseen.
	flip := append(late, op(1, Input{Kind: OpRead, Org: 0}, 40, 41, Output{Name: "a0", Level: 3}))
	if err := Check("flip", 1, start, flip, 10*time.Second, t.TempDir()); !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("want ErrNotLinearizable, got %v", err)
	}
	invented := []porcupine.Operation{unknown, op(1, Input{Kind: OpRead, Org: 0}, 20, 21, Output{Name: "zz", Level: 3})}
	if err := Check("invented", 1, start, invented, 10*time.Second, t.TempDir()); !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("want ErrNotLinearizable, got %v", err)
	}
}

func TestHistoryRecordsUnknownOutcomesOpen(t *testing.T) {
	h := NewHistory()
	c := h.Client()
	call := h.Call()
	h.Ok(c, Input{Kind: OpRead}, call, Output{Name: "a0", Level: 3}, Meta{Node: "n1"})
	h.Unknown(h.Client(), Input{Kind: OpRename, Name: "x"}, h.Call())
	h.Failed()
	ok, unknown, failed := h.Counts()
	if ok != 1 || unknown != 1 || failed != 1 {
		t.Fatalf("counts %d/%d/%d", ok, unknown, failed)
	}
	ops := h.Operations()
	if ops[0].Return < ops[0].Call || ops[1].Return != math.MaxInt64 || ops[0].ClientId == ops[1].ClientId {
		t.Fatalf("bad operations %+v", ops)
	}
}

func TestSettleNarrowsUnknownOutcomes(t *testing.T) {
	unseen := op(0, Input{Kind: OpRename, Org: 0, Name: "a1"}, 0, math.MaxInt64, Output{Unknown: true})
	seen := op(1, Input{Kind: OpRename, Org: 0, Name: "a2"}, 1, math.MaxInt64, Output{Unknown: true})
	unapproved := op(2, Input{Kind: OpSetLevel, Org: 1, Level: 1}, 2, math.MaxInt64, Output{Unknown: true})
	unapproved.Metadata = Meta{Change: "change-1"}
	read := op(3, Input{Kind: OpRead, Org: 0}, 20, 25, Output{Name: "a2", Level: 3})
	got := Settle([]porcupine.Operation{unseen, seen, unapproved, read}, func(o porcupine.Operation) bool { m, _ := o.Metadata.(Meta); return m.Change == "change-1" })
	if len(got) != 2 || got[0].Input.(Input).Name != "a2" || got[0].Return != 25 || got[1].Input.(Input).Kind != OpRead {
		t.Fatalf("settled to %+v", got)
	}
	// A settled history is checked like any other: a read of the old name
	// invoked after the one that saw a2 returned is stale.
	stale := append(got, op(3, Input{Kind: OpRead, Org: 0}, 30, 31, Output{Name: "a0", Level: 3}))
	if err := Check("stale", 1, start, stale, 10*time.Second, t.TempDir()); !errors.Is(err, ErrNotLinearizable) {
		t.Fatalf("want ErrNotLinearizable, got %v", err)
	}
}
