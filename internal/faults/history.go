package faults

import (
	"math"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// History records the operations of concurrent clients with their invoke
// and complete times (nanoseconds since the history began, on the
// monotonic clock). It is safe for concurrent use.
type History struct {
	start time.Time

	mu      sync.Mutex
	ops     []porcupine.Operation
	clients int
	unknown int
	failed  int
}

// NewHistory starts an empty history now.
func NewHistory() *History { return &History{start: time.Now()} }

// Client returns a new client id. A client whose operation ended with an
// unknown outcome takes a new id for its next one: the unknown operation
// stays open for ever, and one client's operations must not overlap.
func (h *History) Client() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

// Call is the invoke time of an operation starting now.
func (h *History) Call() int64 { return int64(time.Since(h.start)) }

// Meta is what the history keeps about an operation besides its input and
// output: the node that answered (or was asked), and for a level change
// the admin change's id (to resolve an unknown outcome after the run).
type Meta struct {
	Node   string `json:"node,omitempty"`
	Change string `json:"change,omitempty"`
}

// Ok records an operation that completed now with out.
func (h *History) Ok(client int, in Input, call int64, out Output, meta Meta) {
	h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: int64(time.Since(h.start)), Metadata: meta})
}

// Unknown records a write whose outcome is unknown: it may take effect at
// any time after its call, or never.
func (h *History) Unknown(client int, in Input, call int64) { h.UnknownWith(client, in, call, Meta{}) }

// Failed counts an operation that certainly did not take effect (a read
// or check refused, a write refused before it was proposed): it constrains
// nothing and is not part of the history.
func (h *History) Failed() {
	h.mu.Lock()
	h.failed++
	h.mu.Unlock()
}

func (h *History) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Operations is a copy of the recorded operations.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Counts is how many operations completed, ended unknown and failed.
func (h *History) Counts() (ok, unknown, failed int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops) - h.unknown, h.unknown, h.failed
}

// Settle narrows the unknown outcomes of ops with what was learnt after
// the run, as etcd's robustness tests do, so that the checker does not
// have to try every place for every unknown write (its cost grows
// exponentially with their number):
//   - a rename whose outcome is unknown and whose name (unique to it) no
//     read returned is dropped: had it taken effect, no read saw it, so the
//     history is linearizable with it exactly when it is without it;
//   - one whose name a read returned took effect before the first such
//     read returned: its return time becomes that read's;
//   - an unknown operation neverApplied says did not take effect (e.g. an
//     admin change found unapproved after the run) is dropped.
func Settle(ops []porcupine.Operation, neverApplied func(porcupine.Operation) bool) []porcupine.Operation {
	seen := map[string]int64{} // name → earliest return of a read that saw it
	for _, op := range ops {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == OpRead && !out.Unknown {
			if r, ok := seen[out.Name]; !ok || op.Return < r {
				seen[out.Name] = op.Return
			}
		}
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		in, o := op.Input.(Input), op.Output.(Output)
		if o.Unknown {
			if neverApplied != nil && neverApplied(op) {
				continue
			}
			if in.Kind == OpRename {
				r, ok := seen[in.Name]
				if !ok {
					continue
				}
				op.Return = max(r, op.Call)
			}
		}
		out = append(out, op)
	}
	return out
}

// UnknownWith records a write whose outcome is unknown, with metadata that
// lets the run resolve it later (Settle's neverApplied).
func (h *History) UnknownWith(client int, in Input, call int64, meta Meta) {
	h.mu.Lock()
	h.unknown++
	h.mu.Unlock()
	h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: Output{Unknown: true}, Return: math.MaxInt64, Metadata: meta})
}
