package state

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RequestTTL is how long an applied request id is remembered for
// de-duplication, measured in command (leader-stamped) time.
const RequestTTL = 15 * time.Minute

// maxPrunePerApply bounds the clean-up (request ids, used nonces) done per command.
const maxPrunePerApply = 64

// Result is what Apply returns to the proposer on the leader.
type Result struct {
	// Index of the log entry that produced the outcome (for a duplicate, the
	// index at which the request was first applied).
	Index uint64
	// Err is nil on success, an *Error for a business error, or wraps
	// ErrCorruptCommand.
	Err error
	// Duplicate is true when the request id had already been applied.
	Duplicate bool
	// AuditSequence is the sequence number of the first audit entry the
	// command wrote (its entries are consecutive).
	AuditSequence uint64
}

// command is one entry of the command table (see commands).
type command struct {
	// payload is the command's message (a typed nil): Encode finds the
	// type of a message by it, the audit log decodes the payload with it.
	payload proto.Message
	// apply applies the command inside a write transaction. It returns a
	// business error (an *Error) to refuse the command; the transaction is
	// then discarded, so a refused command never changes state.
	apply handler
	// audit is how the audit log records the command.
	audit auditClass
	// redact, if set, removes secrets from the decoded payload before the
	// command is written to the audit log (marked redacted); when it
	// returns false the payload is left out altogether.
	redact func(proto.Message) bool
}

// handler applies one command (see command.apply).
type handler func(f *FSM, tx *memdb.Txn, env *commandv1.Envelope, index uint64) error

// pure adapts a handler that needs only the transaction and the verifier,
// which is all but the audit log's own commands.
func pure(h func(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error) handler {
	return func(f *FSM, tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
		return h(tx, env, index, f.verifier)
	}
}

// auditClass is how the audit log records a command.
type auditClass int

const (
	// auditAsCommand: one entry for the command (applied or refused), plus
	// the level changes and cascades it set off.
	auditAsCommand auditClass = iota + 1
	// auditAsEvents: once applied, the entries are the events the command
	// carries (decisions, authentication failures); refused, it is audited
	// as a command.
	auditAsEvents
	// auditNot: the audit log's own metadata (checkpoints, cosignatures),
	// never audited: auditing it would grow the log forever.
	auditNot
)

// FSM applies registry commands to a Store. It is driven by one goroutine
// (the Raft apply loop); reads go through Store.Read concurrently.
type FSM struct {
	store    *Store
	verifier Verifier
	logger   *slog.Logger
	audit    *auditor // nil: auditing off
	// views, diverged and rows (the apply goroutine's row hasher): see
	// commitment.go.
	views viewRing
	rows  rowHasher
	// changed is how many rows the last command's commitAt changed (the
	// apply goroutine's; retainView weighs its view with it).
	changed  int
	diverged func(index uint64, reason string)
	replay   replayCursor
	// onBatch and lastWrite: see decisionbatch.go.
	onBatch   func(DecisionBatch)
	lastWrite atomic.Uint64
}

// NewFSM returns an FSM over store that re-verifies signatures with v.
// logger may be nil.
func NewFSM(store *Store, v Verifier, logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	return &FSM{store: store, verifier: v, logger: logger}
}

// Store returns the store the FSM writes.
func (f *FSM) Store() *Store { return f.store }

// Apply decodes the envelope in cmd, refuses it if it is malformed, unknown or
// a duplicate, and otherwise dispatches it. It returns a Result.
func (f *FSM) Apply(index uint64, cmd []byte) any {
	defer f.retainView()
	if f.audit != nil && !f.auditing(index) {
		f.compareReplayed(index, cmd)
	}
	env := &commandv1.Envelope{}
	if err := proto.Unmarshal(cmd, env); err != nil {
		f.logger.Error("corrupt registry command: not applied", "index", index, "error", err)
		f.setIndex(index)
		res := Result{Index: index, Err: fmt.Errorf("%w at index %d: %v", ErrCorruptCommand, index, err)}
		if f.auditing(index) {
			sum := sha256.Sum256(cmd)
			res.AuditSequence = f.audit.add(index, f.audit.lastTime, &trustfedv1.AuditEntry{Type: AuditCorrupt, Error: err.Error(), CommandSha256: sum[:]})
		}
		return res
	}
	db := f.store.db.Load()
	tx := db.Txn(true)
	defer tx.Abort()
	// Every write is tracked: the state hash (commitment.go) is brought up
	// to date from the rows it changed, and the audit log reads them.
	tx.TrackChanges()
	auditing := f.auditing(index)
	var before *memdb.Txn
	if auditing {
		before = db.Txn(false)
	}

	// The payload's hash is what a request id is recorded with: a command
	// without one (an audit batch: up to hundreds of decisions) skips it.
	var sum [sha256.Size]byte
	if env.RequestId != "" {
		sum = sha256.Sum256(env.Payload)
		// A request id older than RequestTTL counts as unseen whether or not
		// the clean-up (bounded per command) has removed it yet, so the
		// outcome never depends on how many commands ran in between (audit
		// replay applies only the audited ones).
		if prev, ok := first[*commandv1.AppliedRequest](tx, tableRequests, "id", env.RequestId); ok && !prev.GetTime().AsTime().Before(env.GetTime().AsTime().Add(-RequestTTL)) {
			res := Result{Index: prev.Index, Duplicate: true}
			if !bytes.Equal(prev.PayloadSha256, sum[:]) {
				res.Err = Invalid("request_id", "%q was already used for a different request", env.RequestId)
			} else if prev.ErrorKind != uint32(KindUnknown) || prev.Error != "" {
				res.Err = &Error{Kind: ErrorKind(prev.ErrorKind), Field: prev.ErrorField, Msg: prev.Error}
			}
			f.commitAt(tx, index)
			return res
		}
	}

	err := f.dispatch(tx, env, index)
	if errors.Is(err, errAuditBatchApplied) {
		f.commitAt(tx, index)
		return Result{Index: index, Duplicate: true}
	}
	if err != nil {
		// Discard every write of the refused command.
		tx.Abort()
		tx = db.Txn(true)
		defer tx.Abort()
		tx.TrackChanges()
	}
	// The clean-up runs before the request is recorded: it reads the
	// requests table's time index, and a read of an index the transaction
	// already wrote goes through a clone that drops memdb's cache of the
	// nodes it copied (the deletes would copy the path again). It prunes
	// what it would after the record: not the row the record replaces.
	mustDo(pruneRequests(tx, env.GetTime().AsTime().Add(-RequestTTL), env.RequestId))
	if env.RequestId != "" {
		mustDo(recordRequest(tx, env, index, sum[:], err))
	}
	res := Result{Index: index, Err: err}
	if auditing {
		res.AuditSequence = f.auditCommand(before, tx, env, cmd, index, err)
	}
	f.commitAt(tx, index)
	if err == nil {
		f.noteWrite(env.Type, index)
		if auditing {
			f.handOverDecisions(env, index, &Reader{txn: before})
		}
	}
	return res
}

// commitAt folds the write's changes into the state hash (commitment.go),
// records index and commits: the end of every write that changes rows.
// The meta row is read before anything writes the meta table, and written
// once: memdb reads an index a transaction already wrote through a clone,
// which drops the transaction's cache of the nodes it copied, so the next
// write to that index would copy its path (and allocate a cache) again.
func (f *FSM) commitAt(tx *memdb.Txn, index uint64) {
	changed, err := commitMeta(tx, &f.rows, metaOf(tx), index)
	mustDo(err)
	f.changed = changed
	tx.Commit()
}

func (f *FSM) dispatch(tx *memdb.Txn, env *commandv1.Envelope, index uint64) error {
	c, ok := commands[env.Type]
	if !ok {
		return Invalid("type", "unknown command type %d", int32(env.Type))
	}
	if env.Time == nil {
		return Invalid("time", "command carries no leader-stamped time")
	}
	return c.apply(f, tx, env, index)
}

func (f *FSM) setIndex(index uint64) {
	tx := f.store.db.Load().Txn(true)
	defer tx.Abort()
	mustDo(setIndex(tx, index))
	tx.Commit()
}

// setIndex records index in tx's meta row, keeping its state hash.
func setIndex(tx *memdb.Txn, index uint64) error {
	return setMeta(tx, index, stateHashOf(tx))
}

func recordRequest(tx *memdb.Txn, env *commandv1.Envelope, index uint64, sum []byte, applyErr error) error {
	r := &commandv1.AppliedRequest{
		RequestId:     env.RequestId,
		Index:         index,
		Time:          env.Time,
		PayloadSha256: sum,
	}
	if applyErr != nil {
		r.Error = applyErr.Error()
		if e, ok := applyErr.(*Error); ok {
			r.Error, r.ErrorKind, r.ErrorField = e.Msg, uint32(e.Kind), e.Field
		}
	}
	return tx.Insert(tableRequests, r)
}

// pruneRequests forgets request ids applied before cutoff, a bounded number
// per call. The row of request id replacing (the request about to be
// recorded, which replaces it) is passed over and not counted: the
// clean-up deletes what it would once that row is replaced.
func pruneRequests(tx *memdb.Txn, cutoff time.Time, replacing string) error {
	expired := func(raw any) bool {
		return raw.(*commandv1.AppliedRequest).GetTime().AsTime().Before(cutoff)
	}
	if replacing == "" {
		return pruneOldest(tx, tableRequests, "time", expired, nil)
	}
	return pruneOldest(tx, tableRequests, "time", expired, func(raw any) bool {
		return raw.(*commandv1.AppliedRequest).RequestId == replacing
	})
}

// pruneOldest deletes, in the order of index (a time), the first rows of
// table for which expired holds, at most maxPrunePerApply of them, passing
// over those skip (if set) holds for: the clean-up each command does is
// bounded, and identical on every replica.
func pruneOldest(tx *memdb.Txn, table, index string, expired, skip func(raw any) bool) error {
	it, err := tx.Get(table, index)
	if err != nil {
		return err
	}
	var buf [maxPrunePerApply]any
	old := buf[:0]
	for raw := it.Next(); raw != nil && len(old) < maxPrunePerApply; raw = it.Next() {
		if skip != nil && skip(raw) {
			continue
		}
		if !expired(raw) {
			break
		}
		old = append(old, raw)
	}
	for _, raw := range old {
		if err := tx.Delete(table, raw); err != nil {
			return err
		}
	}
	return nil
}

// mustDo panics on an internal store error: these only happen on a schema
// bug (wrong object type, missing index), never on input, and continuing
// would let replicas diverge.
func mustDo(err error) {
	if err != nil {
		panic(fmt.Sprintf("state: internal store error: %v", err))
	}
}

func stamp(env *commandv1.Envelope) *timestamppb.Timestamp {
	return timestamppb.New(env.Time.AsTime())
}
