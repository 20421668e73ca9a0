package consensus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SnapshotInfo describes a snapshot opened for a backup: the Raft index and
// term of the last entry it includes.
type SnapshotInfo struct {
	Index, Term uint64
	Size        int64
}

// OpenSnapshot takes a snapshot of the state machine now (raft's user
// snapshot, on the apply goroutine) and opens it for reading: a backup.
// When nothing was applied since the last snapshot, that one is current and
// is opened instead. A caller that first waits for a read index
// (LinearizableRead) gets a snapshot holding every write acknowledged
// before its call. The caller closes the reader.
func (n *Node) OpenSnapshot(ctx context.Context) (SnapshotInfo, io.ReadCloser, error) {
	if n.isClosed() {
		return SnapshotInfo{}, nil, fmt.Errorf("open snapshot: %w", ErrClosed)
	}
	f := n.raft.Snapshot()
	err := n.wait(ctx, f)
	if errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return n.openLatestSnapshot()
	}
	if err != nil {
		return SnapshotInfo{}, nil, mapQueryErr("open snapshot", err)
	}
	meta, rc, err := f.Open()
	if err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("open snapshot: %w", err)
	}
	return SnapshotInfo{Index: meta.Index, Term: meta.Term, Size: meta.Size}, rc, nil
}

func (n *Node) openLatestSnapshot() (SnapshotInfo, io.ReadCloser, error) {
	list, err := n.snaps.List()
	if err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("open snapshot: list snapshots: %w", err)
	}
	if len(list) == 0 {
		return SnapshotInfo{}, nil, errors.New("open snapshot: raft has nothing to snapshot and no snapshot yet")
	}
	meta, rc, err := n.snaps.Open(list[0].ID)
	if err != nil {
		return SnapshotInfo{}, nil, fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	return SnapshotInfo{Index: meta.Index, Term: meta.Term, Size: meta.Size}, rc, nil
}

// SnapshotStateMachine reads the header our snapshots start with (the
// applied index of the state machine and the node metadata) and leaves r
// at the start of the state machine's own snapshot: what `snapshot
// inspect` reads.
func SnapshotStateMachine(r io.Reader) (applied uint64, meta map[string]string, err error) {
	return readSnapshotHeader(r)
}

// RestoreSnapshot prepares dataDir, the Raft dir of a server that never
// ran (no Raft state), to start as the single voter of a new cluster whose
// state is the snapshot read from r (a stream OpenSnapshot gave, taken at
// Raft index and term): it stores the snapshot with a configuration of
// self alone, and records term as the current term, so the server restores
// the state, elects itself in a later term and continues the log after
// index. The other servers then join it with empty data dirs. Only self's
// API address is kept from the snapshot's node metadata.
func RestoreSnapshot(dataDir string, self RecoveryServer, index, term uint64, r io.Reader) error {
	if self.ID == "" {
		return errors.New("restore snapshot: no node id")
	}
	if err := CheckAddress(self.RaftAddr); err != nil {
		return fmt.Errorf("restore snapshot: raft address %w", err)
	}
	if index == 0 || term == 0 {
		return fmt.Errorf("restore snapshot: index %d, term %d: not a snapshot of a running cluster", index, term)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	boltOpts := *bbolt.DefaultOptions
	boltOpts.Timeout = time.Second
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dataDir, "raft.db"), BoltOptions: &boltOpts})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("restore snapshot: the Raft store in %s is locked: a server runs on it", dataDir)
	}
	if err != nil {
		return fmt.Errorf("restore snapshot: open the Raft store in %s: %w", dataDir, err)
	}
	defer store.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, snapshotsRetained, newHCLogger(slog.New(slog.DiscardHandler), "raft-snapshot"))
	if err != nil {
		return fmt.Errorf("restore snapshot: open the snapshot store in %s: %w", dataDir, err)
	}
	has, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		return fmt.Errorf("restore snapshot: inspect %s: %w", dataDir, err)
	}
	if has {
		return fmt.Errorf("restore snapshot: %s already holds Raft state: restore into a new data dir", dataDir)
	}
	applied, meta, err := readSnapshotHeader(r)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	kept := map[string]string{}
	if api, ok := meta[self.ID]; ok {
		kept[self.ID] = api
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(self.ID), Address: raft.ServerAddress(self.RaftAddr)}}}
	// Create encodes the legacy peer list with a transport's EncodePeer:
	// an in-memory one, never connected, does that.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(self.RaftAddr))
	defer trans.Close()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, conf, index, trans)
	if err != nil {
		return fmt.Errorf("restore snapshot: create: %w", err)
	}
	err = writeSnapshotHeader(sink, applied, kept)
	if err == nil {
		_, err = io.Copy(sink, r)
	}
	if err != nil {
		return errors.Join(fmt.Errorf("restore snapshot: write: %w", err), sink.Cancel())
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("restore snapshot: close: %w", err)
	}
	// raft's key for the current term (api.go keyCurrentTerm): the first
	// election of the new cluster is then in a later term than every entry
	// of the snapshot.
	if err := store.SetUint64([]byte("CurrentTerm"), term); err != nil {
		return fmt.Errorf("restore snapshot: record term %d: %w", term, err)
	}
	return nil
}
