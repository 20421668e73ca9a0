package state

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// fillOrgs inserts n organisations into f's store directly.
func fillOrgs(f *FSM, n int) {
	tx := f.store.db.Load().Txn(true)
	for i := range n {
		id := fmt.Sprintf("org-%06d", i)
		mustDo(tx.Insert(tableOrganizations, &trustfedv1.Organization{Id: id, Name: "Organisation " + id, Jurisdiction: "EU", DeclaredLevel: 3}))
	}
	mustDo(setIndex(tx, 7))
	tx.Commit()
}

func mustCommit(t *testing.T, r *Reader) []byte {
	t.Helper()
	c, err := r.Commitment()
	require.NoError(t, err)
	require.Len(t, c, CommitmentSize)
	return c
}

// TestCommitmentCoversLevels: equal states commit to the same hash (also
// after a snapshot round trip); a level changed in one row changes it.
func TestCommitmentCoversLevels(t *testing.T) {
	a, b := NewFSM(NewStore(), nil, nil), NewFSM(NewStore(), nil, nil)
	fillOrgs(a, 50)
	fillOrgs(b, 50)
	ca := mustCommit(t, a.store.Read())
	require.Equal(t, ca, mustCommit(t, b.store.Read()))

	h := &harness{t: t, fsm: a}
	restored := NewFSM(NewStore(), nil, nil)
	require.NoError(t, restored.Restore(bytes.NewReader(h.snapshotBytes())))
	require.Equal(t, ca, mustCommit(t, restored.store.Read()), "a restored snapshot commits to the same state")

	tx := b.store.db.Load().Txn(true)
	o, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", "org-000017")
	require.True(t, ok)
	o = proto.Clone(o).(*trustfedv1.Organization)
	o.DeclaredLevel = 4
	mustDo(tx.Insert(tableOrganizations, o))
	tx.Commit()
	require.NotEqual(t, ca, mustCommit(t, b.store.Read()), "a forged level must change the commitment")
}

// TestCommitmentAtRetainedIndex: the FSM keeps recent views, so a replica
// can compute the commitment at the index the leader computed it.
func TestCommitmentAtRetainedIndex(t *testing.T) {
	h := newHarness(t)
	h.ensureAdmin()
	at := h.index
	want := mustCommit(t, h.read())
	h.accredit()
	h.member("acme", 3, 3)
	got, ok, err := h.fsm.CommitmentAt(at)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, want, got)
	_, ok, err = h.fsm.CommitmentAt(at + 1000)
	require.NoError(t, err)
	require.False(t, ok, "an index never applied has no commitment")
}

// BenchmarkCommitment hashes a 10,000-organisation state.
func BenchmarkCommitment(b *testing.B) {
	f := NewFSM(NewStore(), nil, nil)
	fillOrgs(f, 10_000)
	r := f.store.Read()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Commitment(); err != nil {
			b.Fatal(err)
		}
	}
}

// A replica that installs a snapshot no longer knows the states between
// what it had applied and the snapshot's index: the views it kept from
// before must not stand in for them (a decision batch would be re-derived
// on an old state, and the replica, outvoted, would think it diverged).
func TestRestoreForgetsTheViewsBeforeIt(t *testing.T) {
	lagging := newHarness(t)
	lagging.accredit()
	lagging.member("org-a", 3, 3)
	old := lagging.read().Index()

	leader := newHarness(t)
	leader.accredit()
	leader.member("org-a", 3, 3)
	leader.mustChange(testutil.SetLevel("org-a", 2))
	leader.mustChange(testutil.SetLevel("org-a", 1))
	at := leader.read().Index()
	require.Greater(t, at, old+1)

	require.NoError(t, lagging.fsm.Restore(bytes.NewReader(leader.snapshotBytes())))
	_, ok := lagging.fsm.viewAtOrBefore(at - 1)
	require.False(t, ok, "the state at %d (between %d and the snapshot's %d) is not known here", at-1, old, at)
	txn, ok := lagging.fsm.viewAtOrBefore(at)
	require.True(t, ok, "the restored state is kept")
	require.Equal(t, at, indexOf(txn))
}
