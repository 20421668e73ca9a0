package state

import (
	"time"

	memdb "github.com/hashicorp/go-memdb"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// DecisionBatch is an audit batch of decisions this replica has just
// applied, as its cosigner needs it to re-evaluate every decision on its
// own state (registry/cosign.go). Everything in it is immutable.
type DecisionBatch struct {
	// Index is the Raft index of the APPEND_AUDIT entry; Time its
	// leader-stamped time; NodeID the server whose decisions they are.
	Index  uint64
	Time   time.Time
	NodeID string
	// Statements are the batch's decision statements in order, as logged
	// (Raw) and decoded (nil where one does not decode).
	Raw        [][]byte
	Statements []*trustfedv1.DecisionStatement
	// Before is the state just before the batch (index Index-1's).
	Before *Reader
	// States holds, for each index a statement names, the state as it was
	// at that index (the state after the last command at or before it),
	// when this replica still kept it.
	States map[uint64]*Reader
	// LastWrite is the index of the last command before the batch that
	// changed the trust state (anything but the audit log's own commands);
	// 0 when not known (since a restart or a snapshot restore, before the
	// first such command). A decision read at an index at or after it was
	// made on a state identical, for decisions, to Before.
	LastWrite uint64
}

// OnDecisionBatch sets what the FSM calls with every audit batch of
// decisions it applies for the first time (not those a restarted replica
// re-applies into an audit log that already holds them). It is called on
// the apply goroutine and must not block. Set it before Raft starts.
func (f *FSM) OnDecisionBatch(fn func(DecisionBatch)) { f.onBatch = fn }

// auditOnlyCommands change nothing a decision reads: the audit log's own
// commands.
var auditOnlyCommands = map[commandv1.CommandType]bool{
	commandv1.CommandType_COMMAND_TYPE_APPEND_AUDIT:      true,
	commandv1.CommandType_COMMAND_TYPE_PUT_CHECKPOINT:    true,
	commandv1.CommandType_COMMAND_TYPE_ADD_COSIGNATURE:   true,
	commandv1.CommandType_COMMAND_TYPE_REPORT_DIVERGENCE: true,
}

// noteWrite records that the command at index, applied without error,
// changed the trust state unless it is one of the audit log's own.
func (f *FSM) noteWrite(t commandv1.CommandType, index uint64) {
	if !auditOnlyCommands[t] {
		f.lastWrite.Store(index)
	}
}

// collectDecision remembers a decision statement of the APPEND_AUDIT being
// applied (auditEvents), for the batch handed to OnDecisionBatch.
func (a *auditor) collectDecision(raw []byte, st *trustfedv1.DecisionStatement) {
	a.batchRaw = append(a.batchRaw, raw)
	a.batchSt = append(a.batchSt, st)
}

// handOverDecisions gives the decisions of the batch just applied at index
// to OnDecisionBatch. before is the state before it.
func (f *FSM) handOverDecisions(env *commandv1.Envelope, index uint64, before *Reader) {
	a := f.audit
	if a == nil || len(a.batchRaw) == 0 {
		return
	}
	raw, sts := a.batchRaw, a.batchSt
	a.batchRaw, a.batchSt = nil, nil
	if f.onBatch == nil {
		return
	}
	b := DecisionBatch{
		Index: index, Time: env.GetTime().AsTime(), NodeID: a.batchNode,
		Raw: raw, Statements: sts, Before: before, States: map[uint64]*Reader{},
		LastWrite: f.lastWrite.Load(),
	}
	for _, st := range sts {
		if st == nil {
			continue
		}
		if _, seen := b.States[st.Index]; seen {
			continue
		}
		if txn, ok := f.viewAtOrBefore(st.Index); ok {
			b.States[st.Index] = &Reader{txn: txn}
		} else {
			b.States[st.Index] = nil
		}
	}
	f.onBatch(b)
}

// viewAtOrBefore is the retained view of the state at index: the view of
// the last command at or before it, if the ring still holds it (the oldest
// kept view is at or before index).
func (f *FSM) viewAtOrBefore(index uint64) (*memdb.Txn, bool) {
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	txn, _, ok := f.views.atOrBefore(index)
	return txn, ok
}
