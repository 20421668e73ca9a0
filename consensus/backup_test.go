package consensus

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBackupRestoreNewCluster: a snapshot opened from a running node
// (OpenSnapshot) and written into the data dir of a server that never ran
// (RestoreSnapshot) starts a new single-voter cluster with the same state,
// in a later term, that takes new writes after the snapshot's index and
// that another server joins.
func TestBackupRestoreNewCluster(t *testing.T) {
	c := newCluster(t)
	src := c.start("n1", true)
	waitLeader(t, src)
	for i := range 10 {
		apply(t, fmt.Sprintf("set k%d v%d", i, i), src)
	}
	ctx := ctxT(t)
	_, err := src.LinearizableRead(ctx)
	require.NoError(t, err)
	info, rc, err := src.OpenSnapshot(ctx)
	require.NoError(t, err)
	data, err := io.ReadAll(rc)
	require.NoError(t, rc.Close())
	require.NoError(t, err)
	require.GreaterOrEqual(t, info.Index, src.AppliedIndex())
	require.NotZero(t, info.Term)

	// Nothing applied since: the same snapshot is opened again.
	info2, rc2, err := src.OpenSnapshot(ctx)
	require.NoError(t, err)
	require.NoError(t, rc2.Close())
	require.Equal(t, info.Index, info2.Index)

	want := src.kv.all()
	src.stop()

	restored := newCluster(t)
	addr := "127.0.0.1:" + freePort(t)
	dir := restored.config("r1", addr, false, nil).DataDir
	require.NoError(t, RestoreSnapshot(dir, RecoveryServer{ID: "r1", RaftAddr: addr}, info.Index, info.Term, bytes.NewReader(data)))
	err = RestoreSnapshot(dir, RecoveryServer{ID: "r1", RaftAddr: addr}, info.Index, info.Term, bytes.NewReader(data))
	require.ErrorContains(t, err, "already holds Raft state")

	r1 := restored.startAt("r1", addr, false, nil)
	waitLeader(t, r1)
	require.Equal(t, want, r1.kv.all())
	require.Greater(t, r1.Status().Term, info.Term)
	res := apply(t, "set after restore", r1)
	require.Greater(t, res.Index, info.Index)

	r2 := restored.start("r2", false)
	join(t, r2, r1)
	require.NoError(t, r2.WaitApplied(ctx, res.Index))
	require.Equal(t, r1.kv.all(), r2.kv.all())
}
