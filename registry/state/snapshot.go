package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// snapshotVersion is written in every snapshot header; Restore refuses others.
const snapshotVersion = 1

// maxRecordSize bounds one snapshot record on restore.
const maxRecordSize = 64 << 20

var marshalRecord = protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}

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
	tables := []struct {
		name string
		wrap func(any) *commandv1.SnapshotRecord
	}{
		{tableOrganizations, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Organization{Organization: o.(*trustfedv1.Organization)}}
		}},
		{tableAgreements, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Agreement{Agreement: o.(*trustfedv1.Agreement)}}
		}},
		{tableTokens, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Token{Token: o.(*commandv1.Token)}}
		}},
		{tableRequests, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_AppliedRequest{AppliedRequest: o.(*commandv1.AppliedRequest)}}
		}},
		{tableIssuers, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Issuer{Issuer: o.(*trustfedv1.Issuer)}}
		}},
		{tableRevoked, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_RevokedPassport{RevokedPassport: o.(*commandv1.RevokedPassport)}}
		}},
		{tableAuthorizations, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Authorization{Authorization: o.(*trustfedv1.Authorization)}}
		}},
		{tableSigningKeys, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_SigningKey{SigningKey: o.(*commandv1.SigningKey)}}
		}},
		{tableAdmins, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Admin{Admin: o.(*trustfedv1.Admin)}}
		}},
		{tableAdminChanges, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_AdminChange{AdminChange: o.(*trustfedv1.AdminChangeRecord)}}
		}},
		{tableEdges, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Edge{Edge: o.(*commandv1.GraphEdge)}}
		}},
		{tableSessions, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Session{Session: o.(*trustfedv1.Session)}}
		}},
		{tableCascades, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Cascade{Cascade: o.(*trustfedv1.Cascade)}}
		}},
		{tableTargets, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_EventTarget{EventTarget: o.(*commandv1.EventTarget)}}
		}},
		{tablePolicy, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_FederationPolicy{FederationPolicy: o.(*trustfedv1.FederationPolicy)}}
		}},
		{tableCheckpoints, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Checkpoint{Checkpoint: o.(*commandv1.StoredCheckpoint)}}
		}},
		{tableMemberNodes, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_MemberNode{MemberNode: o.(*trustfedv1.MemberNode)}}
		}},
		{tableUsedNonces, func(o any) *commandv1.SnapshotRecord {
			return &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_UsedNonce{UsedNonce: o.(*commandv1.UsedNonce)}}
		}},
	}
	for _, t := range tables {
		it, err := s.txn.Get(t.name, "id")
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", t.name, err)
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if _, err := marshalRecord.MarshalTo(bw, t.wrap(raw)); err != nil {
				return fmt.Errorf("write snapshot %s record: %w", t.name, err)
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
	for n := 0; ; n++ {
		var rec commandv1.SnapshotRecord
		err := opts.UnmarshalFrom(br, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read snapshot record %d: %w", n, err)
		}
		if h, ok := rec.Record.(*commandv1.SnapshotRecord_AuditHead); ok {
			if err := f.restoreAudit(h.AuditHead, br, opts); err != nil {
				return err
			}
			break
		}
		if err := insertRecord(tx, &rec); err != nil {
			return fmt.Errorf("restore snapshot record %d: %w", n, err)
		}
	}
	if err := setIndex(tx, hdr.Index); err != nil {
		return fmt.Errorf("restore index: %w", err)
	}
	tx.Commit()
	f.store.db.Store(db)
	return nil
}

func insertRecord(tx *memdb.Txn, rec *commandv1.SnapshotRecord) error {
	switch r := rec.Record.(type) {
	case *commandv1.SnapshotRecord_Organization:
		return tx.Insert(tableOrganizations, r.Organization)
	case *commandv1.SnapshotRecord_Agreement:
		return tx.Insert(tableAgreements, r.Agreement)
	case *commandv1.SnapshotRecord_Token:
		return tx.Insert(tableTokens, r.Token)
	case *commandv1.SnapshotRecord_AppliedRequest:
		return tx.Insert(tableRequests, r.AppliedRequest)
	case *commandv1.SnapshotRecord_Issuer:
		return tx.Insert(tableIssuers, r.Issuer)
	case *commandv1.SnapshotRecord_RevokedPassport:
		return tx.Insert(tableRevoked, r.RevokedPassport)
	case *commandv1.SnapshotRecord_Authorization:
		return tx.Insert(tableAuthorizations, r.Authorization)
	case *commandv1.SnapshotRecord_SigningKey:
		return tx.Insert(tableSigningKeys, r.SigningKey)
	case *commandv1.SnapshotRecord_FederationPolicy:
		return tx.Insert(tablePolicy, r.FederationPolicy)
	case *commandv1.SnapshotRecord_Admin:
		return tx.Insert(tableAdmins, r.Admin)
	case *commandv1.SnapshotRecord_AdminChange:
		return tx.Insert(tableAdminChanges, r.AdminChange)
	case *commandv1.SnapshotRecord_Edge:
		return tx.Insert(tableEdges, r.Edge)
	case *commandv1.SnapshotRecord_Session:
		return tx.Insert(tableSessions, r.Session)
	case *commandv1.SnapshotRecord_Cascade:
		return tx.Insert(tableCascades, r.Cascade)
	case *commandv1.SnapshotRecord_EventTarget:
		return tx.Insert(tableTargets, r.EventTarget)
	case *commandv1.SnapshotRecord_Checkpoint:
		return tx.Insert(tableCheckpoints, r.Checkpoint)
	case *commandv1.SnapshotRecord_MemberNode:
		return tx.Insert(tableMemberNodes, r.MemberNode)
	case *commandv1.SnapshotRecord_UsedNonce:
		return tx.Insert(tableUsedNonces, r.UsedNonce)
	default:
		return fmt.Errorf("unknown snapshot record %T", rec.Record)
	}
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
