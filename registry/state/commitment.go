package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"runtime"
	"sort"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// commitmentDomain starts every commitment, so its hash is never mistaken
// for another kind of digest.
const commitmentDomain = "trustfed trust-state commitment v2\n"

// CommitmentSize is the length of a commitment (SHA-256).
const CommitmentSize = sha256.Size

// Commitment is this view's commitment to the trust state (version 2):
//
//	SHA-256("trustfed trust-state commitment v2\n" || index || S)
//
// where index is the Raft index the view reflects (8 bytes, big-endian)
// and S the LtHash16 (lthash.go) of the set of every row of every
// replicated table (snapshotTables: organisations and their levels and
// level inputs, agreements, tokens (hashes only), issuers, revoked
// passports, authorisations, signing keys, admins, admin changes, edges,
// sessions, cascades, event targets, policy, checkpoints, member nodes,
// used nonces, node keys, applied request ids), each row an element:
// uvarint(len(table)) || table || the row's deterministic protobuf
// encoding. Two replicas that applied the same commands up to the same
// index compute the same commitment; one whose state was altered in any
// table does not.
//
// S is kept up to date by every applied command (foldChanges: minus the
// rows it changed or deleted, plus the rows it wrote) in the view itself,
// so the commitment of any view costs one SHA-256 of 2 KiB, whatever the
// size of the state. A restored snapshot's S is recomputed from its rows
// (never read from the snapshot), and VerifyStateHash recomputes it in
// full to catch an in-memory state that drifted from its rows.
func (r *Reader) Commitment() ([]byte, error) {
	return commitmentOf(r.txn), nil
}

// FullCommitment is the commitment of this view recomputed from every row
// (what Commitment returns when the kept LtHash is right): it costs a
// pass over the whole state, on every core.
func (r *Reader) FullCommitment() ([]byte, error) {
	sum, err := fullStateHash(r.txn, runtime.GOMAXPROCS(0))
	if err != nil {
		return nil, err
	}
	return commitmentFrom(indexOf(r.txn), sum), nil
}

func commitmentOf(txn *memdb.Txn) []byte {
	return commitmentFrom(indexOf(txn), stateHashOf(txn))
}

func commitmentFrom(index uint64, sum *ltHash) []byte {
	h := sha256.New()
	h.Write([]byte(commitmentDomain))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], index)
	h.Write(b[:])
	h.Write(sum[:])
	return h.Sum(nil)
}

// emptyMeta stands for the meta row of a view that has none (a new
// store's): index 0, the LtHash of the empty set. Never written.
var emptyMeta = metaRow{Key: metaKeyIndex}

// metaOf is txn's meta row (schema.go).
func metaOf(txn *memdb.Txn) *metaRow {
	raw, err := txn.First(tableMeta, "id", metaKeyIndex)
	if err != nil || raw == nil {
		return &emptyMeta
	}
	return raw.(*metaRow)
}

// stateHashOf is the LtHash kept in txn's view (zero when none is: an
// empty store). It is never changed once stored.
func stateHashOf(txn *memdb.Txn) *ltHash {
	return &metaOf(txn).Sum
}

// replicatedTable is the set of snapshotTables' names.
var replicatedTable = func() map[string]bool {
	m := make(map[string]bool, len(snapshotTables))
	for _, t := range snapshotTables {
		m[t.table] = true
	}
	return m
}()

// rowHasher expands rows into LtHash elements.
type rowHasher struct {
	e ltExpander
	// seed is the expansion input of the last row: ltExpandDomain, then
	// the element (uvarint(len(table)) || table || the row's encoding);
	// prev that of the row before it (foldInto compares them).
	seed, prev []byte
}

var rowOptions = proto.MarshalOptions{Deterministic: true}

// vector is the LtHash vector of a row of table (valid until the next call).
func (rh *rowHasher) vector(table string, raw any) (*[ltHashSize]byte, error) {
	if err := rh.encode(table, raw); err != nil {
		return nil, err
	}
	return rh.e.expandSeeded(rh.seed), nil
}

// encode sets rh.seed to the expansion input of a row of table.
func (rh *rowHasher) encode(table string, raw any) error {
	m, ok := raw.(proto.Message)
	if !ok {
		return fmt.Errorf("state hash over %s: a row of type %T is not a protobuf message", table, raw)
	}
	b := append(rh.seed[:0], ltExpandDomain...)
	b = binary.AppendUvarint(b, uint64(len(table)))
	b = append(b, table...)
	var err error
	if b, err = rowOptions.MarshalAppend(b, m); err != nil {
		return fmt.Errorf("state hash over %s: %w", table, err)
	}
	rh.seed = b
	return nil
}

// fullStateHash is the LtHash of every replicated row of txn's view,
// hashed by workers goroutines: the rows are immutable, so they marshal
// them concurrently, and the sum is the same in any order. This goroutine
// walks the tables and hands the rows over in batches.
func fullStateHash(txn *memdb.Txn, workers int) (*ltHash, error) {
	workers = max(workers, 1)
	type batch struct {
		table string
		rows  []any
	}
	const batchRows = 512
	batches := make(chan batch, workers)
	sums := make([]ltHash, workers)
	errs := make([]error, workers+1)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var rh rowHasher
			for b := range batches {
				for _, raw := range b.rows {
					if errs[w] != nil {
						break // drain the batches so the walk ends
					}
					v, err := rh.vector(b.table, raw)
					if err != nil {
						errs[w] = err
						break
					}
					sums[w].add(v)
				}
			}
		})
	}
	func() {
		defer close(batches)
		for _, t := range snapshotTables {
			it, err := txn.Get(t.table, "id")
			if err != nil {
				errs[workers] = fmt.Errorf("state hash over %s: %w", t.table, err)
				return
			}
			rows := make([]any, 0, batchRows)
			for raw := it.Next(); raw != nil; raw = it.Next() {
				if rows = append(rows, raw); len(rows) == batchRows {
					batches <- batch{t.table, rows}
					rows = make([]any, 0, batchRows)
				}
			}
			if len(rows) > 0 {
				batches <- batch{t.table, rows}
			}
		}
	}()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var sum ltHash
	for i := range sums {
		sum.add((*[ltHashSize]byte)(&sums[i]))
	}
	return &sum, nil
}

// setMeta stores index and the LtHash sum as tx's meta row.
func setMeta(tx *memdb.Txn, index uint64, sum *ltHash) error {
	return tx.Insert(tableMeta, &metaRow{Key: metaKeyIndex, Index: index, Sum: *sum})
}

// foldChanges brings tx's LtHash up to date, using rh, with the changes tx
// tracked (TrackChanges must have been on from its start), keeping its
// index; commitMeta is the same, with a new index.
func foldChanges(tx *memdb.Txn, rh *rowHasher) error {
	cur := metaOf(tx)
	_, err := commitMeta(tx, rh, cur, cur.Index)
	return err
}

// commitMeta writes tx's meta row (cur, read before tx wrote the meta
// table) with index and the LtHash brought up to date, using rh, with the
// changes tx tracked (TrackChanges must have been on from its start): each
// replicated row it changed or deleted is subtracted as it was before,
// each one it wrote is added as it is now. memdb collapses the changes of
// one row to the net one. The row is new, never changed in place: older
// views share the one they hold. One read and one write of the meta table,
// whatever the command; the fold costs O(rows changed). It returns how
// many rows tx changed.
func commitMeta(tx *memdb.Txn, rh *rowHasher, cur *metaRow, index uint64) (int, error) {
	row := &metaRow{Key: metaKeyIndex, Index: index, Sum: cur.Sum}
	changes := tx.Changes()
	if err := foldInto(&row.Sum, changes, rh); err != nil {
		return 0, err
	}
	return len(changes), tx.Insert(tableMeta, row)
}

// foldInto folds changes into sum (see commitMeta).
func foldInto(next *ltHash, changes memdb.Changes, rh *rowHasher) error {
	for _, ch := range changes {
		if !replicatedTable[ch.Table] {
			continue
		}
		if ch.Before != nil && ch.After != nil {
			// A row rewritten as it was (its encoding unchanged) leaves
			// the sum as it is: minus and plus the same vector.
			if err := rh.encode(ch.Table, ch.Before); err != nil {
				return err
			}
			rh.seed, rh.prev = rh.prev, rh.seed
			if err := rh.encode(ch.Table, ch.After); err != nil {
				return err
			}
			if bytes.Equal(rh.prev, rh.seed) {
				continue
			}
			next.sub(rh.e.expandSeeded(rh.prev))
			next.add(rh.e.expandSeeded(rh.seed))
			continue
		}
		if ch.Before != nil {
			v, err := rh.vector(ch.Table, ch.Before)
			if err != nil {
				return err
			}
			next.sub(v)
		}
		if ch.After != nil {
			v, err := rh.vector(ch.Table, ch.After)
			if err != nil {
				return err
			}
			next.add(v)
		}
	}
	return nil
}

// ErrStateHashDrift is what VerifyStateHash returns when the kept LtHash is
// not that of the view's rows.
var ErrStateHashDrift = errors.New("the kept state hash differs from a full recomputation")

// VerifyStateHash recomputes the LtHash of every row of this view and
// compares it with the one kept incrementally: they differ only if a row
// was changed outside the apply path (memory corruption, a bug that
// mutated a stored object in place), which the commitment would otherwise
// not show. It costs a pass over the whole state, on one core (it is
// background work: serving keeps the others), and reads only this
// immutable view: call it off the apply goroutine.
func (r *Reader) VerifyStateHash() error {
	full, err := fullStateHash(r.txn, 1)
	if err != nil {
		return err
	}
	if kept := stateHashOf(r.txn); *kept != *full {
		return fmt.Errorf("%w at index %d: kept %x…, recomputed %x… (commitments %x and %x)", ErrStateHashDrift, r.Index(),
			kept[:8], full[:8], commitmentFrom(r.Index(), kept), commitmentFrom(r.Index(), full))
	}
	return nil
}

// commitmentDomainV1 started the version 1 commitment.
const commitmentDomainV1 = "trustfed trust-state commitment v1\n"

// commitmentV1Of is the version 1 commitment (until this release): one
// SHA-256 over the domain, the index and every replicated row, table by
// table in snapshot order and by primary key, length-prefixed. Checkpoints
// in existing audit logs and Raft logs, and those an older leader still
// proposes during a rolling upgrade, carry it: a replica compares with it
// only when the version 2 commitment did not match (CommitmentAtAs).
func commitmentV1Of(txn *memdb.Txn) ([]byte, error) {
	h := sha256.New()
	h.Write([]byte(commitmentDomainV1))
	var buf [binary.MaxVarintLen64]byte
	h.Write(buf[:binary.PutUvarint(buf[:], indexOf(txn))])
	var row []byte
	for _, t := range snapshotTables {
		writeField(h, buf[:], []byte(t.table))
		it, err := txn.Get(t.table, "id")
		if err != nil {
			return nil, fmt.Errorf("commitment over %s: %w", t.table, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			m, ok := raw.(proto.Message)
			if !ok {
				return nil, fmt.Errorf("commitment over %s: a row of type %T is not a protobuf message", t.table, raw)
			}
			if row, err = rowOptions.MarshalAppend(row[:0], m); err != nil {
				return nil, fmt.Errorf("commitment over %s: %w", t.table, err)
			}
			// 1 marks a row, 0 (below) the end of the table.
			h.Write([]byte{1})
			writeField(h, buf[:], row)
		}
		h.Write([]byte{0})
	}
	return h.Sum(nil), nil
}

// writeField writes b length-prefixed.
func writeField(h hash.Hash, buf []byte, b []byte) {
	h.Write(buf[:binary.PutUvarint(buf, uint64(len(b)))])
	h.Write(b)
}

// keepViews is how many recent views (one per applied registry command)
// the FSM keeps whole: a follower re-derives a decision on the view of the
// index it was read at (decisionbatch.go), and a version 1 commitment (a
// checkpoint of an older release) is computed from a view. A view keeps
// alive every radix node its command replaced, so the views are also
// bounded by the rows their commands changed (viewRowBudget): a bulk
// command (an import of 500 agreements changes ~1,500 rows) otherwise held
// most of the tree twice (1,024 imports: ~2.6 KB more heap per agreement).
// The last minViews views are kept whatever they changed.
//
// keepCommitments is how many views no longer kept whole the FSM keeps the
// meta row of (their index and LtHash, 2 KiB each, from which a
// commitment is one SHA-256 when it is asked for): the leader computes its
// commitment at its applied index and proposes the checkpoint, which is
// applied a few commands later (more under load).
const (
	keepViews       = 1024
	minViews        = 64
	viewRowBudget   = 16384
	keepCommitments = 1024
)

// viewRing holds the last views by the index they reflect, oldest first
// from start (n of them), each with the rows its command changed, and the
// meta rows of the keepCommitments views dropped before them.
type viewRing struct {
	mu     sync.Mutex
	txns   [keepViews]*memdb.Txn
	idx    [keepViews]uint64 // the index each view reflects
	weight [keepViews]int    // the rows its command changed
	start  int
	n      int
	rows   int // the sum of weight over the kept views

	metas    [keepCommitments]*metaRow
	metaNext int
}

// retainView keeps the view the last Apply left, weighed by the rows its
// command changed; the views it drops leave their meta rows.
func (f *FSM) retainView() {
	txn := f.store.db.Load().Txn(false)
	w := f.changed
	f.changed = 0
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	f.views.push(txn, indexOf(txn), w)
}

// push keeps txn (the view of index, whose command changed w rows), first
// dropping the oldest views while the ring is full or, beyond minViews,
// while the rows changed would exceed viewRowBudget. Callers hold mu.
func (v *viewRing) push(txn *memdb.Txn, index uint64, w int) {
	for v.n > 0 && (v.n == keepViews || (v.n >= minViews && v.rows+w > viewRowBudget)) {
		old := v.start
		v.metas[v.metaNext] = metaOf(v.txns[old])
		v.metaNext = (v.metaNext + 1) % keepCommitments
		v.rows -= v.weight[old]
		v.txns[old], v.idx[old], v.weight[old] = nil, 0, 0
		v.start = (v.start + 1) % keepViews
		v.n--
	}
	at := (v.start + v.n) % keepViews
	v.txns[at], v.idx[at], v.weight[at] = txn, index, w
	v.n++
	v.rows += w
}

// forgetViews drops every retained view and commitment (a snapshot restore).
func (f *FSM) forgetViews() {
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	f.views.txns = [keepViews]*memdb.Txn{}
	f.views.idx = [keepViews]uint64{}
	f.views.weight = [keepViews]int{}
	f.views.start, f.views.n, f.views.rows = 0, 0, 0
	f.views.metas = [keepCommitments]*metaRow{}
	f.views.metaNext = 0
}

// viewAt is the retained view of index, if it is still kept.
func (f *FSM) viewAt(index uint64) (*memdb.Txn, bool) {
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	txn, at, ok := f.views.atOrBefore(index)
	return txn, ok && at == index
}

// atOrBefore is the newest kept view at or before index and the index it
// reflects; false when every kept view is newer (or none is kept). The
// views are in index order and the ones asked for are recent (a decision
// batch's, a checkpoint's), so it walks back from the newest. Callers hold
// mu.
func (v *viewRing) atOrBefore(index uint64) (*memdb.Txn, uint64, bool) {
	for k := v.n - 1; k >= 0; k-- {
		at := (v.start + k) % keepViews
		if v.idx[at] <= index {
			return v.txns[at], v.idx[at], true
		}
	}
	return nil, 0, false
}

// keptCommitment is the commitment of a view no longer kept whole, if its
// meta row is still kept.
func (f *FSM) keptCommitment(index uint64) ([]byte, bool) {
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	return f.views.dropped(index)
}

// dropped is the commitment of the dropped view of index, if its meta row
// is still kept. Callers hold mu.
func (v *viewRing) dropped(index uint64) ([]byte, bool) {
	for _, m := range v.metas {
		if m != nil && m.Index == index {
			return commitmentFrom(m.Index, &m.Sum), true
		}
	}
	return nil, false
}

// CommitmentAt is this replica's commitment at index (the state right after
// the registry command at index applied), if it is still kept (the last
// views kept whole, or the commitments kept of the keepCommitments views
// dropped before them). Safe to call from any goroutine.
func (f *FSM) CommitmentAt(index uint64) ([]byte, bool, error) {
	if txn, ok := f.viewAt(index); ok {
		return commitmentOf(txn), true, nil
	}
	sum, ok := f.keptCommitment(index)
	return sum, ok, nil
}

// CommitmentAtAs is CommitmentAt in the version of want, a commitment
// another server computed at index: the version 1 commitment when want is
// not this replica's version 2 one but is its version 1 one (a checkpoint
// written before this release, or proposed by a leader that still runs an
// older one), else the version 2 one. A caller compares the result with
// want as it would CommitmentAt's. The version 1 fallback costs a pass over
// the whole state, and is taken only on a mismatch.
func (f *FSM) CommitmentAtAs(index uint64, want []byte) ([]byte, bool, error) {
	txn, ok := f.viewAt(index)
	if !ok {
		// Only the version 2 commitment is kept: a different want may be
		// a version 1 one, which needs the view, so it is not compared.
		sum, kept := f.keptCommitment(index)
		if !kept {
			return nil, false, nil
		}
		if len(want) == CommitmentSize && !bytes.Equal(sum, want) {
			f.logger.Warn("state commitment not compared: it differs from the one given and the view to compute its version 1 is no longer kept (a checkpoint of an older release, or this replica diverged: the next checkpoints will tell)",
				"state_index", index, "mine", fmt.Sprintf("%x", sum), "given", fmt.Sprintf("%x", want))
			return nil, false, nil
		}
		return sum, true, nil
	}
	mine := commitmentOf(txn)
	if len(want) != CommitmentSize || bytes.Equal(mine, want) {
		return mine, true, nil
	}
	v1, err := commitmentV1Of(txn)
	if err != nil {
		return nil, true, err
	}
	if bytes.Equal(v1, want) {
		f.logger.Debug("state commitment compared in version 1 (a checkpoint of an older release)", "state_index", index)
		return v1, true, nil
	}
	return mine, true, nil
}

// OnDivergence sets what the FSM calls when this replica finds its state
// differs from what the cluster committed to (a checkpoint's commitment it
// does not reproduce). It is called on the apply goroutine and must not
// block. Set it before Raft starts.
func (f *FSM) OnDivergence(fn func(index uint64, reason string)) { f.diverged = fn }

// checkCommitment compares the commitment a checkpoint carries (computed
// by the leader at c.StateIndex) with this replica's own at that index, in
// the checkpoint's version (CommitmentAtAs: a version 1 commitment, from
// before the incremental one, is compared in version 1). A checkpoint
// without one (written before commitments existed) or an index no longer
// kept (the replica restored a newer snapshot) is not compared.
func (f *FSM) checkCommitment(want []byte, at, index uint64, certified bool) {
	whose := "the cluster's checkpoint"
	if certified {
		whose = "the checkpoint certified by a quorum of the registry nodes"
	}
	if len(want) == 0 || f.diverged == nil {
		return
	}
	got, ok, err := f.CommitmentAtAs(at, want)
	switch {
	case err != nil:
		f.diverged(at, fmt.Sprintf("cannot compute the state commitment at index %d (checkpoint at index %d): %v", at, index, err))
	case !ok:
		f.logger.Debug("state commitment not compared: the view is no longer kept", "state_index", at, "index", index)
	case !bytes.Equal(got, want):
		f.diverged(at, fmt.Sprintf("the state at index %d commits to %x, %s at index %d says %x", at, got, whose, index, want))
	}
}

// MaxDivergenceReason bounds the reason a ReportDivergence carries.
const MaxDivergenceReason = 1024

// ValidateReportDivergence checks a divergence report.
func ValidateReportDivergence(c *commandv1.ReportDivergence) error {
	if err := validateText("divergence.node_id", c.GetNodeId(), 128); err != nil {
		return err
	}
	if c.GetIndex() == 0 {
		return Invalid("divergence.index", "is required")
	}
	return validateText("divergence.reason", c.GetReason(), MaxDivergenceReason)
}

// applyReportDivergence changes no state: the command exists so every
// replica's audit log records, as a command entry, that a server diverged.
func applyReportDivergence(_ *memdb.Txn, env *commandv1.Envelope, _ uint64, _ Verifier) error {
	var c commandv1.ReportDivergence
	if err := proto.Unmarshal(env.Payload, &c); err != nil {
		return Invalid("payload", "not a ReportDivergence: %v", err)
	}
	return ValidateReportDivergence(&c)
}

// replayCursor walks the audit log alongside the Raft entries a restarted
// replica re-applies (those its audit log already holds): next is the
// sequence number of the first entry not yet compared.
type replayCursor struct {
	started bool
	next    uint64
}

// entryAt decodes audit entry seq.
func (f *FSM) entryAt(seq uint64) (*trustfedv1.AuditEntry, error) {
	e := &trustfedv1.AuditEntry{}
	var found bool
	err := f.audit.log.Range(seq, seq+1, func(_ uint64, l AuditLeaf) error {
		found = true
		return proto.Unmarshal(l.Data, e)
	})
	if err == nil && !found {
		err = fmt.Errorf("no audit entry %d", seq)
	}
	return e, err
}

// compareReplayed compares a command this replica re-applies (its audit
// log already covers index) with what the audit log recorded for it: the
// SHA-256 of the command each command entry carries. A command that hashes
// otherwise was altered in the Raft log since it was first applied: the
// replica diverged. Entries without a command hash (decisions, level
// changes) and commands never audited (checkpoints) are not compared.
func (f *FSM) compareReplayed(index uint64, cmd []byte) {
	if f.diverged == nil {
		return
	}
	size := f.audit.log.Size()
	c := &f.replay
	if !c.started {
		// The first entry of index or after: entries are in Raft index order.
		c.started = true
		c.next = uint64(sort.Search(int(size), func(i int) bool {
			e, err := f.entryAt(uint64(i))
			return err != nil || e.LogIndex >= index
		}))
	}
	sum := sha256.Sum256(cmd)
	for ; c.next < size; c.next++ {
		e, err := f.entryAt(c.next)
		if err != nil {
			f.diverged(index, fmt.Sprintf("the audit log cannot be read at entry %d while re-applying index %d: %v", c.next, index, err))
			return
		}
		if e.LogIndex > index {
			return
		}
		if e.LogIndex == index && len(e.CommandSha256) > 0 && !bytes.Equal(e.CommandSha256, sum[:]) {
			f.diverged(index, fmt.Sprintf("the command re-applied at index %d hashes to %x, the audit log recorded %x (entry %d): the Raft log was altered", index, sum[:], e.CommandSha256, c.next))
		}
	}
}
