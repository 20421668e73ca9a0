package registry

import (
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
)

// AuditLog adapts the on-disk Merkle log to the state machine's AuditLog
// (the state package imports nothing of ours but proto).
type AuditLog struct{ *audit.Log }

var _ state.AuditLog = AuditLog{}

// AppendBatches implements state.AuditLog.
func (a AuditLog) AppendBatches(batches []state.AuditBatch) (uint64, error) {
	out := make([]audit.Batch, len(batches))
	for i, b := range batches {
		leaves := make([]audit.Leaf, len(b.Leaves))
		for j, l := range b.Leaves {
			leaves[j] = audit.Leaf(l)
		}
		out[i] = audit.Batch{LogIndex: b.LogIndex, Leaves: leaves}
	}
	return a.Log.AppendBatches(out)
}

// Range implements state.AuditLog.
func (a AuditLog) Range(from, to uint64, fn func(seq uint64, leaf state.AuditLeaf) error) error {
	return a.Log.Range(from, to, func(seq uint64, l audit.Leaf) error { return fn(seq, state.AuditLeaf(l)) })
}

// Replace implements state.AuditLog.
func (a AuditLog) Replace(lastIndex uint64, wantRoot []byte, next func() (state.AuditLeaf, bool, error)) error {
	return a.Log.Replace(lastIndex, wantRoot, func() (audit.Leaf, bool, error) {
		l, ok, err := next()
		return audit.Leaf(l), ok, err
	})
}
