package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// Kind bytes prefixed to every command entry. Append only: a value, once
// released, keeps its meaning forever.
const (
	kindUser byte = 0x00 // user command: data[1:] goes to StateMachine.Apply
	kindMeta byte = 0x01 // node metadata (metaCommand JSON), handled here
)

// errUnknownKind is the Apply response for an entry whose kind byte this
// version does not know. It is returned, not panicked, identically on
// every replica.
var errUnknownKind = errors.New("unknown command kind")

// metaCommand records (or, with an empty APIAddr, forgets) a node's API
// address in the replicated node-metadata table.
type metaCommand struct {
	ID      string `json:"id"`
	APIAddr string `json:"api_addr"`
}

func encodeMeta(id, apiAddr string) ([]byte, error) {
	b, err := json.Marshal(metaCommand{ID: id, APIAddr: apiAddr})
	if err != nil {
		return nil, fmt.Errorf("encode node metadata: %w", err)
	}
	return append([]byte{kindMeta}, b...), nil
}

// fsm is the raft.FSM handed to raft. It dispatches on the kind byte,
// keeps the node metadata, and tracks the applied index so WaitApplied can
// block without polling.
//
// The applied index moves on every entry raft hands to the FSM: commands
// and configuration changes (we implement raft.BatchingFSM, which is what
// makes raft pass configuration entries). Raft keeps no-op and barrier
// entries to itself, so the applied index can trail raft's commit index by
// those; see DESIGN.md for why ReadIndex uses this index.
type fsm struct {
	sm     StateMachine
	logger *slog.Logger

	applied atomic.Uint64

	mu     sync.Mutex
	meta   map[string]string // node ID -> API address
	notify chan struct{}     // closed and replaced whenever applied advances
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(sm StateMachine, logger *slog.Logger) *fsm {
	return &fsm{sm: sm, logger: logger, meta: map[string]string{}, notify: make(chan struct{})}
}

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch implements raft.BatchingFSM. Raft passes command and
// configuration entries in log order; only commands reach the dispatch.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	var last uint64
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = f.applyCommand(l)
		}
		last = l.Index
	}
	if e, ok := f.sm.(BatchEnder); ok {
		e.EndBatch()
	}
	f.advance(last)
	return out
}

func (f *fsm) applyCommand(l *raft.Log) any {
	if len(l.Data) == 0 {
		return fmt.Errorf("entry %d: %w: empty entry", l.Index, errUnknownKind)
	}
	switch l.Data[0] {
	case kindUser:
		return f.sm.Apply(l.Index, l.Data[1:])
	case kindMeta:
		return f.applyMeta(l.Index, l.Data[1:])
	default:
		return fmt.Errorf("entry %d: %w 0x%02x", l.Index, errUnknownKind, l.Data[0])
	}
}

func (f *fsm) applyMeta(index uint64, data []byte) any {
	var m metaCommand
	if err := json.Unmarshal(data, &m); err != nil {
		f.logger.Error("corrupt node metadata entry", "index", index, "error", err)
		return fmt.Errorf("entry %d: decode node metadata: %w", index, err)
	}
	if m.ID == "" {
		return fmt.Errorf("entry %d: node metadata without node id", index)
	}
	f.mu.Lock()
	if m.APIAddr == "" {
		delete(f.meta, m.ID)
	} else {
		f.meta[m.ID] = m.APIAddr
	}
	f.mu.Unlock()
	return nil
}

// advance records that everything up to idx has been applied and wakes
// WaitApplied callers.
func (f *fsm) advance(idx uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if idx <= f.applied.Load() {
		return
	}
	f.applied.Store(idx)
	close(f.notify)
	f.notify = make(chan struct{})
}

// appliedIndex is the index of the last entry applied to the state.
func (f *fsm) appliedIndex() uint64 { return f.applied.Load() }

// waitCh returns a channel closed at the next advance. Take it before
// reading appliedIndex so no advance can be missed.
func (f *fsm) waitCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.notify
}

// apiAddr returns the replicated API address of node id ("" if unknown).
func (f *fsm) apiAddr(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.meta[id]
}

// metadata returns a copy of the node-metadata table.
func (f *fsm) metadata() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.meta)
}

// restored swaps in the metadata and applied index read from a snapshot.
// The index may go backwards (a restore replaces the whole state), so
// waiters are woken unconditionally.
func (f *fsm) restored(index uint64, meta map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.meta = meta
	f.applied.Store(index)
	close(f.notify)
	f.notify = make(chan struct{})
}
