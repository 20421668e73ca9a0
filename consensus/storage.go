package consensus

import (
	"log/slog"
	"sync/atomic"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/trustfed/trustfed/internal/faultinject"
)

// watchedStore is the Raft log and stable store that remembers whether its
// last write failed (a full disk, a data dir turned read-only). raft only
// logs such a failure — a leader steps down, a follower refuses the
// entries — and the node would otherwise look healthy while it can apply
// nothing new: its reads would wait for an index it can never store. With
// a storage fault the node answers no linearizable read (ErrStorage) and
// reports the fault (Status.StorageFault, so /readyz says 503) until a
// write succeeds again.
type watchedStore struct {
	*raftboltdb.BoltStore
	logger *slog.Logger
	fault  atomic.Pointer[error]
	// failAppends, while set, is what every log append returns without
	// writing: the package's tests give a follower a full disk for as long
	// as they choose (TestFaultsDiskFull fills a real volume).
	failAppends atomic.Pointer[error]
}

var (
	_ raft.LogStore    = (*watchedStore)(nil)
	_ raft.StableStore = (*watchedStore)(nil)
)

// note records the outcome of a write and returns err. Only a log append
// that succeeds clears a fault: a small write (a vote, a compaction) can
// succeed in pages the store already has while appends still fail.
func (s *watchedStore) note(err error, append bool) error {
	if err != nil {
		if s.fault.Swap(&err) == nil {
			s.logger.Error("raft storage failing: this node answers no reads or checks until it can write its log again", "error", err)
		}
		return err
	}
	if append {
		if old := s.fault.Swap(nil); old != nil {
			s.logger.Info("raft storage writable again", "after", *old)
		}
	}
	return nil
}

// Fault is the last write's error while writes fail, nil otherwise.
func (s *watchedStore) Fault() error {
	if p := s.fault.Load(); p != nil {
		return *p
	}
	return nil
}

// Every write first calls faultinject.DelayWrite: nothing in the production
// build, a slow fsync in the fault tests' build (tag trustfed_faults).

func (s *watchedStore) StoreLog(l *raft.Log) error {
	faultinject.DelayWrite()
	if err := s.failAppends.Load(); err != nil {
		return s.note(*err, true)
	}
	return s.note(s.BoltStore.StoreLog(l), true)
}

func (s *watchedStore) StoreLogs(logs []*raft.Log) error {
	faultinject.DelayWrite()
	if err := s.failAppends.Load(); err != nil {
		return s.note(*err, true)
	}
	return s.note(s.BoltStore.StoreLogs(logs), true)
}

func (s *watchedStore) DeleteRange(lo, hi uint64) error {
	return s.note(s.BoltStore.DeleteRange(lo, hi), false)
}

func (s *watchedStore) Set(k, v []byte) error {
	faultinject.DelayWrite()
	return s.note(s.BoltStore.Set(k, v), false)
}

func (s *watchedStore) SetUint64(k []byte, v uint64) error {
	faultinject.DelayWrite()
	return s.note(s.BoltStore.SetUint64(k, v), false)
}

// StorageFault is why this node cannot write its Raft log right now (nil
// when it can). While it is set the node answers no linearizable read.
func (n *Node) StorageFault() error { return n.store.Fault() }
