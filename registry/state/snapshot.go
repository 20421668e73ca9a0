package state

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
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
}

// Snapshot captures the current state.
func (f *FSM) Snapshot() (*Snapshot, error) {
	return &Snapshot{txn: f.store.db.Load().Snapshot().Txn(false)}, nil
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
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("flush snapshot: %w", err)
	}
	return nil
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
	default:
		return fmt.Errorf("unknown snapshot record %T", rec.Record)
	}
}
