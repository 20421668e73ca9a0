package consensus

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// PeersFile is the name, in a node's DataDir, of the recovery
// configuration (hashicorp/raft's peers.json format, version 2). New
// applies it before starting raft, then deletes it.
const PeersFile = "peers.json"

// RecoveryServer is one server of a recovery configuration: every one is a
// voter.
type RecoveryServer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"address"`
}

// PrepareRecovery writes a recovery configuration into the DataDir of a
// stopped node, for a cluster that lost its quorum for good: when the node
// starts next, New replaces the Raft configuration in its log with servers
// (every one a voter) and deletes the file. Each surviving server listed
// must get the same file before it starts; the others must never start
// again with their old data. It refuses a running node (its store is
// locked), a DataDir without Raft state, and a server list that is empty,
// has duplicate ids or bad addresses.
func PrepareRecovery(dataDir string, servers []RecoveryServer) error {
	if len(servers) == 0 {
		return errors.New("prepare recovery: no server listed")
	}
	seen := map[string]bool{}
	for _, s := range servers {
		if s.ID == "" {
			return errors.New("prepare recovery: a server has no id")
		}
		if seen[s.ID] {
			return fmt.Errorf("prepare recovery: server %s listed twice", s.ID)
		}
		seen[s.ID] = true
		if err := CheckAddress(s.RaftAddr); err != nil {
			return fmt.Errorf("prepare recovery: raft address of %s %w", s.ID, err)
		}
	}
	dbPath := filepath.Join(dataDir, "raft.db")
	if _, err := os.Stat(dbPath); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("prepare recovery: %s holds no Raft state (no raft.db): nothing to recover", dataDir)
	}
	boltOpts := *bbolt.DefaultOptions
	boltOpts.Timeout = time.Second
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath, BoltOptions: &boltOpts})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("prepare recovery: the Raft store in %s is locked: stop the server first: %w", dataDir, err)
	}
	if err != nil {
		return fmt.Errorf("prepare recovery: open the Raft store in %s: %w", dataDir, err)
	}
	last, err := store.LastIndex()
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("prepare recovery: read the Raft store in %s: %w", dataDir, err)
	}
	if last == 0 {
		if snaps, _ := filepath.Glob(filepath.Join(dataDir, "snapshots", "*", "meta.json")); len(snaps) == 0 {
			return fmt.Errorf("prepare recovery: %s holds no Raft state: nothing to recover", dataDir)
		}
	}
	b, err := json.MarshalIndent(servers, "", "  ")
	if err != nil {
		return fmt.Errorf("prepare recovery: %w", err)
	}
	path := filepath.Join(dataDir, PeersFile)
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("prepare recovery: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("prepare recovery: %w", err)
	}
	return nil
}

// recoverFromPeersFile applies DataDir/peers.json, if present, with
// raft.RecoverCluster: the state is rebuilt from the latest snapshot and
// the log, saved as a new snapshot holding the configuration of the file,
// and the file is deleted, so recovery happens once.
func recoverFromPeersFile(dataDir string, rc *raft.Config, f *fsm, logs raft.LogStore, stable raft.StableStore,
	snaps raft.SnapshotStore, trans raft.Transport, logger *slog.Logger,
) error {
	path := filepath.Join(dataDir, PeersFile)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("recover cluster: %w", err)
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("recover cluster from %s: %w", path, err)
	}
	if err := raft.RecoverCluster(rc, f, logs, stable, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover cluster from %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("recovered the cluster, but could not delete %s (delete it before the next start): %w", path, err)
	}
	logger.Warn("recovered the cluster configuration from "+PeersFile, "servers", fmt.Sprint(conf.Servers))
	return nil
}
