package state

import (
	"fmt"
	"io"
	"testing"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// BenchmarkSnapshotPersist writes a snapshot of 100,000 organisations.
func BenchmarkSnapshotPersist(b *testing.B) {
	f := NewFSM(NewStore(), nil, nil)
	tx := f.store.db.Load().Txn(true)
	for i := range 100_000 {
		id := fmt.Sprintf("org-%06d", i)
		mustDo(tx.Insert(tableOrganizations, &trustfedv1.Organization{Id: id, Name: "Organisation " + id, Jurisdiction: "EU", DeclaredLevel: 3}))
	}
	tx.Commit()
	b.ReportAllocs()
	for b.Loop() {
		snap, err := f.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(io.Discard); err != nil {
			b.Fatal(err)
		}
		snap.Release()
	}
}
