package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"sort"
	"sync"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// commitmentDomain starts every commitment, so its hash is never mistaken
// for another kind of digest.
const commitmentDomain = "trustfed trust-state commitment v1\n"

// CommitmentSize is the length of a commitment (SHA-256).
const CommitmentSize = sha256.Size

// Commitment is this view's commitment to the trust state: SHA-256 over
// the domain string, the Raft index the view reflects and then every row of
// every replicated table (snapshotTables: organisations and their levels and
// level inputs, agreements, tokens (hashes only), issuers, revoked
// passports, authorisations, signing keys, admins, admin changes, edges,
// sessions, cascades, event targets, policy, checkpoints, member nodes,
// used nonces, applied request ids), table by table in snapshot order and
// within a table in primary-key order, each row as its deterministic
// protobuf encoding, length-prefixed. Two replicas that applied the same
// commands up to the same index compute the same commitment; one whose
// state was altered in any table does not.
//
// It is a full hash: on a 10,000-organisation state it takes a few
// milliseconds (BenchmarkCommitment), and it is computed once per audit
// checkpoint, not per command.
func (r *Reader) Commitment() ([]byte, error) {
	return commitmentOf(r.txn)
}

func commitmentOf(txn *memdb.Txn) ([]byte, error) {
	h := sha256.New()
	h.Write([]byte(commitmentDomain))
	var buf [binary.MaxVarintLen64]byte
	h.Write(buf[:binary.PutUvarint(buf[:], indexOf(txn))])
	opts := proto.MarshalOptions{Deterministic: true}
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
			if row, err = opts.MarshalAppend(row[:0], m); err != nil {
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
// the FSM keeps to compute a commitment at an index the leader chose: the
// leader computes its commitment at its applied index and proposes the
// checkpoint; it is applied a few commands later. Views share structure
// (memdb is an immutable radix tree), so keeping them costs little.
const keepViews = 1024

// viewRing holds the last keepViews views by the index they reflect.
type viewRing struct {
	mu   sync.Mutex
	txns [keepViews]*memdb.Txn
	idx  [keepViews]uint64 // the index each view reflects
	next int
}

// retainView keeps the view the last Apply left.
func (f *FSM) retainView() {
	txn := f.store.db.Load().Txn(false)
	index := indexOf(txn)
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	f.views.txns[f.views.next] = txn
	f.views.idx[f.views.next] = index
	f.views.next = (f.views.next + 1) % keepViews
}

// forgetViews drops every retained view (a snapshot restore).
func (f *FSM) forgetViews() {
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	f.views.txns = [keepViews]*memdb.Txn{}
	f.views.idx = [keepViews]uint64{}
	f.views.next = 0
}

// viewAt is the retained view of index, if it is still kept.
func (f *FSM) viewAt(index uint64) (*memdb.Txn, bool) {
	f.views.mu.Lock()
	defer f.views.mu.Unlock()
	for i, txn := range f.views.txns {
		if txn != nil && f.views.idx[i] == index {
			return txn, true
		}
	}
	return nil, false
}

// CommitmentAt is this replica's commitment at index (the state right after
// the registry command at index applied), if the view is still kept (the
// last keepViews commands). Safe to call from any goroutine.
func (f *FSM) CommitmentAt(index uint64) ([]byte, bool, error) {
	txn, ok := f.viewAt(index)
	if !ok {
		return nil, false, nil
	}
	c, err := commitmentOf(txn)
	return c, err == nil, err
}

// OnDivergence sets what the FSM calls when this replica finds its state
// differs from what the cluster committed to (a checkpoint's commitment it
// does not reproduce). It is called on the apply goroutine and must not
// block. Set it before Raft starts.
func (f *FSM) OnDivergence(fn func(index uint64, reason string)) { f.diverged = fn }

// checkCommitment compares the commitment a checkpoint carries (computed
// by the leader at c.StateIndex) with this replica's own at that index. A
// checkpoint without one (written before commitments existed) or an index
// no longer kept (the replica restored a newer snapshot) is not compared.
func (f *FSM) checkCommitment(want []byte, at, index uint64, certified bool) {
	whose := "the cluster's checkpoint"
	if certified {
		whose = "the checkpoint certified by a quorum of the registry nodes"
	}
	if len(want) == 0 || f.diverged == nil {
		return
	}
	got, ok, err := f.CommitmentAt(at)
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
