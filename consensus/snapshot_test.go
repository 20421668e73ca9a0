package consensus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
)

func TestSnapshotRestoreSingleNode(t *testing.T) {
	c := newCluster(t)
	n := c.start("n1", true)
	waitLeader(t, n)
	ctx := ctxT(t)

	for i := range 10 {
		apply(t, fmt.Sprintf("set a%d %d", i, i), n)
	}
	require.NoError(t, n.Snapshot(ctx))
	snapIndex := n.AppliedIndex()
	for i := range 5 {
		apply(t, fmt.Sprintf("set b%d %d", i, i), n)
	}
	last := apply(t, "set last one", n)
	wantKV, wantMeta := n.kv.all(), n.fsm.metadata()
	require.Equal(t, map[string]string{"n1": n.api}, wantMeta)

	snaps, err := os.ReadDir(filepath.Join(n.dataDir, "snapshots"))
	require.NoError(t, err)
	require.Len(t, snaps, 1)

	n2 := c.restart(n)
	// The snapshot is restored while New runs, before any log replay.
	require.GreaterOrEqual(t, n2.AppliedIndex(), snapIndex)
	require.Equal(t, 1, n2.kv.restoreCount())
	waitLeader(t, n2)
	require.NoError(t, n2.WaitApplied(ctx, last.Index))
	require.Equal(t, wantKV, n2.kv.all())
	require.Equal(t, wantMeta, n2.fsm.metadata())
}

func TestSnapshotInstallOnFollower(t *testing.T) {
	c := newCluster(t)
	c.tweak = func(cfg *Config) { cfg.TrailingLogs = 2 } // compact almost everything
	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	ctx := ctxT(t)

	apply(t, "set first 1", nodes...)
	leader := waitLeader(t, nodes...)
	lagging := followers(leader, nodes...)[0]
	addr := lagging.RaftAddr()
	lagging.stop()

	var rest []*testNode
	for _, n := range nodes {
		if n != lagging {
			rest = append(rest, n)
		}
	}
	var last ApplyResult
	for i := range 30 {
		last = apply(t, fmt.Sprintf("set k%d %d", i, i), rest...)
	}
	leader = waitLeader(t, rest...)
	require.NoError(t, leader.Snapshot(ctx))

	// The restarted node's log is behind the leader's compacted log, so it
	// can only catch up through InstallSnapshot (our fsm.Restore).
	back := c.startAt(lagging.id, addr, false, nil)
	require.NoError(t, back.WaitApplied(ctx, last.Index))
	require.Equal(t, 1, back.kv.restoreCount(), "caught up through InstallSnapshot")
	require.Equal(t, leader.kv.all(), back.kv.all())
	require.Equal(t, leader.fsm.metadata(), back.fsm.metadata())
	require.Len(t, back.fsm.metadata(), 3)

	last = apply(t, "set after snapshot", rest[0], rest[1], back)
	require.NoError(t, back.WaitApplied(ctx, last.Index))
	require.Equal(t, "snapshot", back.kv.get("after"))
}

func TestSnapshotHeaderRoundTrip(t *testing.T) {
	src := newFSM(newKV(), testLogger(t))
	src.sm.Apply(1, []byte("set a 1"))
	src.meta["n1"] = "api-1"
	src.advance(7)
	snap, err := src.Snapshot()
	require.NoError(t, err)
	sink := &memSink{}
	require.NoError(t, snap.Persist(sink))
	snap.Release()
	require.True(t, sink.closed)

	dst := newFSM(newKV(), testLogger(t))
	dst.meta["stale"] = "gone"
	require.NoError(t, dst.Restore(readCloser{bytes.NewReader(sink.Bytes())}))
	require.Equal(t, uint64(7), dst.appliedIndex())
	require.Equal(t, map[string]string{"n1": "api-1"}, dst.metadata())
	require.Equal(t, map[string]string{"a": "1"}, dst.sm.(*kvSM).all())

	bad := append([]byte("XXXX"), sink.Bytes()[4:]...)
	require.ErrorIs(t, dst.Restore(readCloser{bytes.NewReader(bad)}), errBadSnapshot)
	require.ErrorIs(t, dst.Restore(readCloser{bytes.NewReader(sink.Bytes()[:6])}), errBadSnapshot)
}

func TestFSMDispatch(t *testing.T) {
	f := newFSM(newKV(), testLogger(t))
	meta, err := encodeMeta("n2", "api-2")
	require.NoError(t, err)
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: []byte("\x00set a 1")},
		{Index: 2, Type: raft.LogConfiguration, Data: []byte("ignored")},
		{Index: 3, Type: raft.LogCommand, Data: meta},
		{Index: 4, Type: raft.LogCommand, Data: []byte("\x7fwhatever")},
		{Index: 5, Type: raft.LogCommand, Data: nil},
		{Index: 6, Type: raft.LogCommand, Data: []byte("\x01{not json")},
	}
	out := f.ApplyBatch(logs)
	require.Len(t, out, len(logs))
	require.Equal(t, "ok", out[0])
	require.Nil(t, out[1])
	require.Nil(t, out[2])
	require.ErrorIs(t, out[3].(error), errUnknownKind)
	require.ErrorIs(t, out[4].(error), errUnknownKind)
	require.Error(t, out[5].(error))
	require.Equal(t, uint64(6), f.appliedIndex())
	require.Equal(t, "api-2", f.apiAddr("n2"))
	require.Equal(t, "1", f.sm.(*kvSM).get("a"))

	// Same input, same responses on another replica.
	g := newFSM(newKV(), testLogger(t))
	require.Equal(t, fmt.Sprint(out), fmt.Sprint(g.ApplyBatch(logs)))
}

type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }
