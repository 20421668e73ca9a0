package state

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// fillOrgs inserts n organisations into f's store directly, keeping its
// state hash as Apply does.
func fillOrgs(f *FSM, n int) {
	tx := f.store.db.Load().Txn(true)
	tx.TrackChanges()
	for i := range n {
		id := fmt.Sprintf("org-%06d", i)
		mustDo(tx.Insert(tableOrganizations, &trustfedv1.Organization{Id: id, Name: "Organisation " + id, Jurisdiction: "EU", DeclaredLevel: 3}))
	}
	mustDo(setIndex(tx, 7))
	mustDo(foldChanges(tx, &rowHasher{}))
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
// after a snapshot round trip); a level changed in one row changes it —
// through a write (the kept state hash follows), and behind the apply
// path's back (the full recomputation, and so VerifyStateHash, sees it).
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

	require.Equal(t, ca, mustFullCommit(t, b.store.Read()), "the kept state hash is the full one")
	require.NoError(t, b.store.Read().VerifyStateHash())

	forge := func(f *FSM, tracked bool) {
		tx := f.store.db.Load().Txn(true)
		if tracked {
			tx.TrackChanges()
		}
		o, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", "org-000017")
		require.True(t, ok)
		o = proto.Clone(o).(*trustfedv1.Organization)
		o.DeclaredLevel = 4
		mustDo(tx.Insert(tableOrganizations, o))
		if tracked {
			mustDo(foldChanges(tx, &rowHasher{}))
		}
		tx.Commit()
	}
	forge(b, true)
	require.NotEqual(t, ca, mustCommit(t, b.store.Read()), "a forged level must change the commitment")
	require.Equal(t, mustFullCommit(t, b.store.Read()), mustCommit(t, b.store.Read()))

	// Changed in memory behind the apply path: the kept hash does not
	// follow, a full recomputation does, and the check says so.
	forge(a, false)
	require.Equal(t, ca, mustCommit(t, a.store.Read()), "the kept hash only follows applied writes")
	require.NotEqual(t, ca, mustFullCommit(t, a.store.Read()), "a forged level must change the full commitment")
	require.ErrorIs(t, a.store.Read().VerifyStateHash(), ErrStateHashDrift)
	// A snapshot of it restores to what its rows hold: the forged level
	// shows in the restored replica's commitment.
	forged := NewFSM(NewStore(), nil, nil)
	require.NoError(t, forged.Restore(bytes.NewReader(h.snapshotBytes())))
	require.NotEqual(t, ca, mustCommit(t, forged.store.Read()), "a restore recomputes the state hash from the rows")
	require.Equal(t, mustFullCommit(t, a.store.Read()), mustCommit(t, forged.store.Read()))
}

func mustFullCommit(t *testing.T, r *Reader) []byte {
	t.Helper()
	c, err := r.FullCommitment()
	require.NoError(t, err)
	return c
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

// TestFoldChangesRandomTransactions: transactions of random inserts,
// updates and deletes, several to the same row in one transaction (memdb
// reports the net change of each row), keep the state hash equal to the
// full recomputation; rows of tables outside the commitment (meta) do not
// count.
func TestFoldChangesRandomTransactions(t *testing.T) {
	f := NewFSM(NewStore(), nil, nil)
	rng := rand.New(rand.NewPCG(7, 19))
	for round := range 200 {
		tx := f.store.db.Load().Txn(true)
		tx.TrackChanges()
		for range 1 + rng.IntN(8) {
			id := fmt.Sprintf("org-%02d", rng.IntN(20))
			switch rng.IntN(3) {
			case 0, 1: // insert or update
				mustDo(tx.Insert(tableOrganizations, &trustfedv1.Organization{Id: id, Name: "Organisation " + id, DeclaredLevel: uint32(rng.IntN(5))}))
			default:
				if o, ok := first[*trustfedv1.Organization](tx, tableOrganizations, "id", id); ok {
					mustDo(tx.Delete(tableOrganizations, o))
				}
			}
		}
		mustDo(setIndex(tx, uint64(round+1)))
		mustDo(foldChanges(tx, &rowHasher{}))
		tx.Commit()
		r := f.store.Read()
		require.Equal(t, mustFullCommit(t, r), mustCommit(t, r), "round %d", round)
	}
	require.NotEqual(t, 0, count(f.store.Read().txn, tableOrganizations))
}

// TestCommitmentAtAsAcceptsVersion1: checkpoints written before the
// version 2 commitment (in the audit and Raft logs a replica re-applies,
// or proposed by a leader still on an older release) carry a version 1
// commitment: a replica compares with its own version 1 commitment then,
// and a forged one still diverges.
func TestCommitmentAtAsAcceptsVersion1(t *testing.T) {
	f := NewFSM(NewStore(), nil, nil)
	fillOrgs(f, 50)
	v1, err := commitmentV1Of(f.store.Read().txn)
	require.NoError(t, err)
	// Computed by the release before this one over the same state: the
	// version 1 commitment is unchanged.
	require.Equal(t, "da55683d792b992db63859847a13526efbdb9813f18e689fed4210c7d1ba6bc8", hex.EncodeToString(v1))

	f.retainView()
	v2 := mustCommit(t, f.store.Read())
	require.NotEqual(t, v1, v2)
	for _, tc := range []struct {
		name       string
		like, want []byte
	}{
		{"version 2", v2, v2},
		{"version 1", v1, v1},
		{"none", nil, v2},
		{"another state", bytes.Repeat([]byte{1}, CommitmentSize), v2},
	} {
		got, kept, err := f.CommitmentAtAs(7, tc.like)
		require.NoError(t, err, tc.name)
		require.True(t, kept, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}

	var diverged []string
	f.OnDivergence(func(_ uint64, reason string) { diverged = append(diverged, reason) })
	f.checkCommitment(v1, 7, 9, false)
	f.checkCommitment(v2, 7, 9, false)
	require.Empty(t, diverged, "a version 1 or 2 commitment of the same state is no divergence")
	forged := bytes.Clone(v1)
	forged[0] ^= 1
	f.checkCommitment(forged, 7, 9, false)
	require.Len(t, diverged, 1)
	require.Contains(t, diverged[0], hex.EncodeToString(v2), "the divergence names this replica's version 2 commitment")
}

// TestCommitmentAtAfterItsViewIsDropped: a view is kept whole for
// keepViews small commands, its commitment for keepCommitments more; a
// commitment that differs from the one given is not compared once only the
// commitment is left (it may be a version 1 one, which needs the view).
func TestCommitmentAtAfterItsViewIsDropped(t *testing.T) {
	h := newHarness(t)
	h.ensureAdmin()
	at := h.index
	want := mustCommit(t, h.read())
	policy := &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_UpdateFederationPolicy{UpdateFederationPolicy: &trustfedv1.FederationPolicyChange{OnboardingCapLevel: proto.Uint32(3)}}}
	for range keepViews - 1 {
		h.change(policy)
	}
	_, whole := h.fsm.viewAt(at)
	require.True(t, whole, "small commands keep keepViews views")
	h.change(policy)
	_, whole = h.fsm.viewAt(at)
	require.False(t, whole, "the view is dropped after keepViews commands")
	got, ok, err := h.fsm.CommitmentAt(at)
	require.NoError(t, err)
	require.True(t, ok, "its commitment is kept")
	require.Equal(t, want, got)
	got, ok, err = h.fsm.CommitmentAtAs(at, want)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, want, got)
	other := bytes.Repeat([]byte{7}, CommitmentSize)
	_, ok, err = h.fsm.CommitmentAtAs(at, other)
	require.NoError(t, err)
	require.False(t, ok, "a different commitment is not compared without the view")

	for range keepCommitments {
		h.change(policy)
	}
	_, ok, err = h.fsm.CommitmentAt(at)
	require.NoError(t, err)
	require.False(t, ok, "gone after keepViews + keepCommitments commands")
	got, ok, err = h.fsm.CommitmentAt(h.index)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, mustCommit(t, h.read()), got)
}

// TestViewRingBoundsTheRowsItKeeps: beyond minViews, views are dropped
// oldest first while the rows their commands changed would exceed
// viewRowBudget; the last minViews are kept whatever they changed, and
// every dropped view leaves its commitment.
func TestViewRingBoundsTheRowsItKeeps(t *testing.T) {
	// The view of each index: a store whose meta row says it.
	db := NewStore().db.Load()
	view := map[uint64]*memdb.Txn{}
	at := func(i uint64) *memdb.Txn {
		tx := db.Txn(true)
		mustDo(setIndex(tx, i))
		tx.Commit()
		view[i] = db.Txn(false)
		return view[i]
	}
	var v viewRing
	for i := uint64(1); i <= 100; i++ { // small commands: all kept
		v.push(at(i), i, 3)
	}
	require.Equal(t, 100, v.n)
	require.Equal(t, 300, v.rows)
	big := viewRowBudget / 4
	for i := uint64(101); i <= 110; i++ { // bulk commands
		v.push(at(i), i, big)
		require.True(t, v.rows <= viewRowBudget || v.n <= minViews, "%d rows in %d views after pushing view %d", v.rows, v.n, i)
	}
	// The budget holds 3 bulk views and some small ones; minViews bounds
	// what is dropped from below.
	require.GreaterOrEqual(t, v.n, minViews)
	for i := uint64(101); i <= 110; i++ {
		kept := false
		for k, tx := range v.txns {
			if tx != nil && v.idx[k] == i {
				kept = true
			}
		}
		if !kept {
			sum, found := v.dropped(i)
			require.True(t, found, "view %d dropped without its commitment", i)
			require.Equal(t, commitmentOf(view[i]), sum)
		}
	}
	// The newest views are always the ones kept, in order.
	last := v.idx[(v.start+v.n-1)%keepViews]
	require.Equal(t, uint64(110), last)
	for k := range v.n - 1 {
		a, b := v.idx[(v.start+k)%keepViews], v.idx[(v.start+k+1)%keepViews]
		require.Equal(t, a+1, b, "kept views are consecutive")
	}
}
