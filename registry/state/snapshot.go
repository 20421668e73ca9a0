package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// snapshotVersion is written in every snapshot header; Restore refuses others.
const snapshotVersion = 1

// maxRecordSize bounds one snapshot record on restore.
const maxRecordSize = 64 << 20

var marshalRecord = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}

// snapshotTables are the tables a snapshot carries, in the order it writes
// them, each with the SnapshotRecord field its rows travel in: adding a table
// to the snapshot is one entry here (TestSnapshotHoldsEveryTable fails for a
// table of the schema left out).
var snapshotTables = func() []snapshotTable {
	rec := (&commandv1.SnapshotRecord{}).ProtoReflect().Descriptor().Fields()
	var out []snapshotTable
	for _, t := range []struct {
		table string
		field protoreflect.Name
	}{
		{tableOrganizations, "organization"},
		{tableAgreements, "agreement"},
		{tableTokens, "token"},
		{tableRequests, "applied_request"},
		{tableIssuers, "issuer"},
		{tableRevoked, "revoked_passport"},
		{tableAuthorizations, "authorization"},
		{tableSigningKeys, "signing_key"},
		{tableAdmins, "admin"},
		{tableAdminChanges, "admin_change"},
		{tableEdges, "edge"},
		{tableSessions, "session"},
		{tableCascades, "cascade"},
		{tableTargets, "event_target"},
		{tablePolicy, "federation_policy"},
		{tableCheckpoints, "checkpoint"},
		{tableMemberNodes, "member_node"},
		{tableUsedNonces, "used_nonce"},
		{tableNodeKeys, "node_key"},
	} {
		fd := rec.ByName(t.field)
		if fd == nil || fd.Message() == nil {
			panic(fmt.Sprintf("state: SnapshotRecord has no message field %s", t.field))
		}
		out = append(out, snapshotTable{table: t.table, field: fd})
	}
	return out
}()

// snapshotTableOf is the table of each SnapshotRecord field number.
var snapshotTableOf = func() map[protoreflect.FieldNumber]string {
	m := make(map[protoreflect.FieldNumber]string, len(snapshotTables))
	for _, t := range snapshotTables {
		m[t.field.Number()] = t.table
	}
	return m
}()

type snapshotTable struct {
	table string
	field protoreflect.FieldDescriptor
}

// Snapshot is a point-in-time view of the state, cheap to take (MVCC) and
// written out later, concurrently with new commands.
type Snapshot struct {
	txn *memdb.Txn
	// The audit log up to auditSize: append-only, so its first auditSize
	// entries never change while Persist streams them.
	audit     AuditLog
	auditHead *commandv1.AuditHead
}

// Snapshot captures the current state. It runs between Raft batches, so
// every audit entry of the state it captures is already written.
func (f *FSM) Snapshot() (*Snapshot, error) {
	s := &Snapshot{txn: f.store.db.Load().Snapshot().Txn(false)}
	if f.audit != nil {
		f.EndBatch()
		l := f.audit.log
		// Raft compacts its log up to this snapshot once it is persisted:
		// from then on the audit entries exist only here and in the file.
		if err := l.Sync(); err != nil {
			return nil, fmt.Errorf("snapshot the audit log: %w", err)
		}
		size := l.Size()
		root, err := l.RootAt(size)
		if err != nil {
			return nil, fmt.Errorf("snapshot the audit log: %w", err)
		}
		s.audit, s.auditHead = l, &commandv1.AuditHead{Size: size, Root: root, LastIndex: l.LastIndex()}
	}
	return s, nil
}

// Persist streams the snapshot as a header followed by one length-delimited
// record per object, table by table in primary-key order, so two replicas at
// the same index write identical bytes.
func (s *Snapshot) Persist(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := marshalRecord.MarshalTo(bw, &commandv1.SnapshotHeader{Version: snapshotVersion, Index: indexOf(s.txn)}); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	// Each record is written as protodelim would marshal a SnapshotRecord
	// whose one field is the row, uvarint(len(record)) || tag || uvarint(
	// len(row)) || row, with the row encoded once into a reused buffer
	// (the deterministic encoding of a message is the same at the top and
	// nested): no record, wrapper or buffer allocated per row.
	var row, head []byte
	for _, t := range snapshotTables {
		it, err := s.txn.Get(t.table, "id")
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", t.table, err)
		}
		tag := protowire.AppendTag(nil, t.field.Number(), protowire.BytesType)
		for raw := it.Next(); raw != nil; raw = it.Next() {
			m, ok := raw.(proto.Message)
			if !ok || m.ProtoReflect().Descriptor() != t.field.Message() {
				return fmt.Errorf("snapshot %s: a row of type %T does not go in record field %s", t.table, raw, t.field.Name())
			}
			if row, err = rowOptions.MarshalAppend(row[:0], m); err != nil {
				return fmt.Errorf("write snapshot %s record: %w", t.table, err)
			}
			head = protowire.AppendVarint(head[:0], uint64(len(tag)+protowire.SizeVarint(uint64(len(row)))+len(row)))
			head = append(head, tag...)
			head = protowire.AppendVarint(head, uint64(len(row)))
			bw.Write(head)
			if _, err := bw.Write(row); err != nil {
				return fmt.Errorf("write snapshot %s record: %w", t.table, err)
			}
		}
	}
	if s.auditHead != nil {
		if err := s.persistAudit(bw); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flush snapshot: %w", err)
	}
	return nil
}

// persistAudit streams the audit log last: its head, then every entry, read
// from disk in one read transaction (never all of it in memory).
func (s *Snapshot) persistAudit(w io.Writer) error {
	if _, err := marshalRecord.MarshalTo(w, &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_AuditHead{AuditHead: s.auditHead}}); err != nil {
		return fmt.Errorf("write snapshot audit head: %w", err)
	}
	rec := &commandv1.SnapshotRecord{}
	leaf := &commandv1.AuditLeaf{}
	return s.audit.Range(0, s.auditHead.Size, func(seq uint64, l AuditLeaf) error {
		leaf.Data, leaf.Time, leaf.Labels = l.Data, timestamppb.New(l.Time), l.Labels
		rec.Record = &commandv1.SnapshotRecord_AuditLeaf{AuditLeaf: leaf}
		if _, err := marshalRecord.MarshalTo(w, rec); err != nil {
			return fmt.Errorf("write snapshot audit entry %d: %w", seq, err)
		}
		return nil
	})
}

// Release frees the snapshot.
func (s *Snapshot) Release() {}

// Restore replaces the whole state with the snapshot read from r. The new
// state is built aside and swapped in only when the stream was read whole.
func (f *FSM) Restore(r io.Reader) error {
	f.lastWrite.Store(0) // the commands before the snapshot are not known
	br := bufio.NewReaderSize(r, 64<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	var hdr commandv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	if hdr.Version != snapshotVersion {
		return fmt.Errorf("snapshot version %d is not supported (want %d)", hdr.Version, snapshotVersion)
	}
	db := newDB()
	tx := db.Txn(true)
	defer tx.Abort()
	compact := newRestoreCompactor(tx)
	// Decoding the rows (one core) runs beside inserting them into
	// go-memdb (the other): each was about half of a restore.
	dec := newRecordDecoder(br, opts)
	defer dec.stop()
	n := 0
	for batch := range dec.batches {
		for _, rec := range batch {
			if err := insertRecord(tx, rec, compact); err != nil {
				return fmt.Errorf("restore snapshot record %d: %w", n, err)
			}
			n++
		}
	}
	if dec.err != nil {
		return dec.err
	}
	if dec.audit != nil {
		// The decoder stopped at the audit head and left the rest of
		// br (the audit log's entries) unread.
		if err := f.restoreAudit(dec.audit, br, opts); err != nil {
			return err
		}
	}
	// The state hash is recomputed from the restored rows, never taken
	// from the snapshot (it carries none): a snapshot altered on disk
	// commits to what it now holds, and the first checkpoint compared
	// shows the difference (commitment.go).
	sum, err := fullStateHash(tx, runtime.GOMAXPROCS(0))
	if err != nil {
		return fmt.Errorf("restore state hash: %w", err)
	}
	if err := setMeta(tx, hdr.Index, sum); err != nil {
		return fmt.Errorf("restore index and state hash: %w", err)
	}
	tx.Commit()
	f.store.db.Store(db)
	// The views kept from before describe states up to what this replica
	// had applied; those between that and the snapshot's index are not
	// known here, and an older view must not stand in for them (a decision
	// batch would be re-derived on it, and this replica, outvoted, would
	// think it diverged).
	f.forgetViews()
	f.retainView() // the restored state is a view a commitment can be computed at (commitment.go)
	f.replay = replayCursor{}
	return nil
}

// recordDecoder reads a snapshot's rows on its own goroutine and hands
// them over in batches, up to the audit head (which it keeps in audit, and
// after which it reads nothing) or the end of the stream. err and audit
// are set before batches is closed.
type recordDecoder struct {
	batches chan []*commandv1.SnapshotRecord
	done    chan struct{} // closed by stop: the decoder returns
	exited  chan struct{}
	err     error
	audit   *commandv1.AuditHead
}

const restoreBatch = 512

func newRecordDecoder(r *bufio.Reader, opts protodelim.UnmarshalOptions) *recordDecoder {
	d := &recordDecoder{batches: make(chan []*commandv1.SnapshotRecord, 4), done: make(chan struct{}), exited: make(chan struct{})}
	go d.run(r, opts) // ends at the stream's end, an error, the audit head or stop
	return d
}

func (d *recordDecoder) run(r *bufio.Reader, opts protodelim.UnmarshalOptions) {
	defer close(d.exited)
	defer close(d.batches)
	batch := make([]*commandv1.SnapshotRecord, 0, restoreBatch)
	send := func() bool {
		if len(batch) == 0 {
			return true
		}
		select {
		case d.batches <- batch:
			batch = make([]*commandv1.SnapshotRecord, 0, restoreBatch)
			return true
		case <-d.done:
			return false
		}
	}
	for n := 0; ; n++ {
		rec := &commandv1.SnapshotRecord{}
		err := opts.UnmarshalFrom(r, rec)
		if errors.Is(err, io.EOF) {
			send()
			return
		}
		if err != nil {
			if send() {
				d.err = fmt.Errorf("read snapshot record %d: %w", n, err)
			}
			return
		}
		if h, ok := rec.Record.(*commandv1.SnapshotRecord_AuditHead); ok {
			if send() {
				d.audit = h.AuditHead
			}
			return
		}
		if batch = append(batch, rec); len(batch) == restoreBatch && !send() {
			return
		}
	}
}

// stop makes the decoder return and waits for it (it no longer reads r).
// Restore calls it once.
func (d *recordDecoder) stop() {
	close(d.done)
	<-d.exited
}

func insertRecord(tx *memdb.Txn, rec *commandv1.SnapshotRecord, compact *restoreCompactor) error {
	m := rec.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("record"))
	if fd == nil {
		return errors.New("empty snapshot record")
	}
	table, ok := snapshotTableOf[fd.Number()]
	if !ok {
		return fmt.Errorf("unknown snapshot record %s", fd.Name())
	}
	row := m.Get(fd).Message().Interface()
	compact.row(table, row)
	return tx.Insert(table, row)
}

// restoreAudit brings the local audit log to the snapshot's. When the
// local log already holds the snapshot's entries (a restart: the log is on
// disk and at least as long) it is kept and the entries in the stream are
// not read; otherwise (a new or lagging replica, or a local log that does
// not match) the log is rebuilt from the stream, aside, and swapped in only
// when its root equals the snapshot's.
func (f *FSM) restoreAudit(head *commandv1.AuditHead, r io.Reader, opts protodelim.UnmarshalOptions) error {
	if f.audit == nil {
		return nil // auditing off here: skip the entries
	}
	l := f.audit.log
	if l.Size() >= head.Size {
		if root, err := l.RootAt(head.Size); err == nil && bytes.Equal(root, head.Root) {
			return nil
		}
		f.logger.Warn("local audit log does not match the snapshot: rebuilding it from the snapshot", "local_size", l.Size(), "snapshot_size", head.Size)
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	var n uint64
	next := func() (AuditLeaf, bool, error) {
		if n == head.Size {
			return AuditLeaf{}, false, nil
		}
		var rec commandv1.SnapshotRecord
		if err := opts.UnmarshalFrom(br, &rec); err != nil {
			return AuditLeaf{}, false, fmt.Errorf("read snapshot audit entry %d: %w", n, err)
		}
		leaf := rec.GetAuditLeaf()
		if leaf == nil {
			return AuditLeaf{}, false, fmt.Errorf("snapshot audit entry %d: unexpected %T", n, rec.Record)
		}
		n++
		return AuditLeaf{Data: leaf.Data, Time: leaf.Time.AsTime(), Labels: leaf.Labels}, true, nil
	}
	if err := l.Replace(head.LastIndex, head.Root, next); err != nil {
		return fmt.Errorf("restore the audit log: %w", err)
	}
	if n != head.Size {
		return fmt.Errorf("restore the audit log: snapshot holds %d of its %d entries", n, head.Size)
	}
	f.audit.lastTime = time.Time{}
	if head.Size > 0 {
		return l.Range(head.Size-1, head.Size, func(_ uint64, leaf AuditLeaf) error {
			f.audit.lastTime = leaf.Time
			return nil
		})
	}
	return nil
}
