package state

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/encoding/protodelim"
)

// TableCount is the number of rows of one table in a snapshot.
type TableCount struct {
	Table string `json:"table"`
	Rows  uint64 `json:"rows"`
}

// SnapshotSummary is what a state snapshot holds, read without restoring
// it (`trustfed snapshot inspect`).
type SnapshotSummary struct {
	// Index of the last command the state applied.
	Index uint64 `json:"index"`
	// Every table a snapshot carries, in snapshot order.
	Tables []TableCount `json:"tables"`
	// StateCommitment is the commitment to the trust state the snapshot
	// holds (Reader.Commitment), recomputed from its rows: the one an
	// audit checkpoint at Index carries.
	StateCommitment []byte `json:"stateCommitment"`
	// The audit log: entries, RFC 6962 root (as the snapshot's head says)
	// and the Raft index of its last entry; RootVerified: the entries in
	// the snapshot hash to that root.
	AuditSize      uint64 `json:"auditSize"`
	AuditRoot      []byte `json:"auditRoot"`
	AuditLastIndex uint64 `json:"auditLastIndex"`
	HasAudit       bool   `json:"hasAudit"`
	RootVerified   bool   `json:"auditRootVerified"`
}

// InspectSnapshot reads a snapshot Persist wrote (after the consensus
// header), counts the rows of each table and recomputes the audit log's
// Merkle root from its entries and the state commitment from its rows. It fails on a record it cannot decode, a
// table it does not know, or an audit log that does not hash to the root
// its head states.
func InspectSnapshot(r io.Reader) (SnapshotSummary, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	opts := protodelim.UnmarshalOptions{MaxSize: maxRecordSize}
	var hdr commandv1.SnapshotHeader
	if err := opts.UnmarshalFrom(br, &hdr); err != nil {
		return SnapshotSummary{}, fmt.Errorf("read snapshot header: %w", err)
	}
	if hdr.Version != snapshotVersion {
		return SnapshotSummary{}, fmt.Errorf("snapshot version %d is not supported (want %d)", hdr.Version, snapshotVersion)
	}
	out := SnapshotSummary{Index: hdr.Index}
	counts := map[string]uint64{}
	var sum ltHash
	var rh rowHasher
	for n := 0; ; n++ {
		var rec commandv1.SnapshotRecord
		err := opts.UnmarshalFrom(br, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("read snapshot record %d: %w", n, err)
		}
		if h, ok := rec.Record.(*commandv1.SnapshotRecord_AuditHead); ok {
			if err := inspectAudit(&out, h.AuditHead, br, opts); err != nil {
				return out, err
			}
			break
		}
		m := rec.ProtoReflect()
		fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("record"))
		if fd == nil {
			return out, fmt.Errorf("snapshot record %d is empty", n)
		}
		table, ok := snapshotTableOf[fd.Number()]
		if !ok {
			return out, fmt.Errorf("snapshot record %d: unknown record %s", n, fd.Name())
		}
		counts[table]++
		v, err := rh.vector(table, m.Get(fd).Message().Interface())
		if err != nil {
			return out, fmt.Errorf("snapshot record %d: %w", n, err)
		}
		sum.add(v)
	}
	out.StateCommitment = commitmentFrom(hdr.Index, &sum)
	for _, t := range snapshotTables {
		out.Tables = append(out.Tables, TableCount{Table: t.table, Rows: counts[t.table]})
	}
	return out, nil
}

func inspectAudit(out *SnapshotSummary, head *commandv1.AuditHead, br *bufio.Reader, opts protodelim.UnmarshalOptions) error {
	out.HasAudit, out.AuditSize, out.AuditRoot, out.AuditLastIndex = true, head.Size, head.Root, head.LastIndex
	tree := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	for n := uint64(0); n < head.Size; n++ {
		var rec commandv1.SnapshotRecord
		if err := opts.UnmarshalFrom(br, &rec); err != nil {
			return fmt.Errorf("read snapshot audit entry %d: %w", n, err)
		}
		leaf := rec.GetAuditLeaf()
		if leaf == nil {
			return fmt.Errorf("snapshot audit entry %d: unexpected %T", n, rec.Record)
		}
		if err := tree.Append(rfc6962.DefaultHasher.HashLeaf(leaf.Data), nil); err != nil {
			return fmt.Errorf("snapshot audit entry %d: %w", n, err)
		}
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if head.Size > 0 {
		var err error
		if root, err = tree.GetRootHash(nil); err != nil {
			return fmt.Errorf("snapshot audit root: %w", err)
		}
	}
	if !bytes.Equal(root, head.Root) {
		return fmt.Errorf("snapshot audit log: its %d entries hash to %x, its head says %x", head.Size, root, head.Root)
	}
	out.RootVerified = true
	return nil
}
