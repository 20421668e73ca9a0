package consensus

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The commit nudge. hashicorp/raft tells a follower that an entry committed
// only with the next AppendEntries, and an idle leader sends one only after
// CommitTimeout (randomised to [CommitTimeout, 2×CommitTimeout)): its
// heartbeats carry no commit index. A check is answered once a quorum of
// replicas applied its audit batch (registry/certify.go), so on a quiet
// cluster every check waited 5–10 ms (the default -raft-commit-timeout) for
// a follower to learn what the leader already knew: a single caller's p50
// on three nodes was ten times the machine's fsync plus round trip.
//
// So when the leader's state machine catches up with its commit index and
// nothing newer is in its log (no AppendEntries in flight that would carry
// the news), it sends each follower one AppendEntries of its own: no
// entries, PrevLogEntry/PrevLogTerm naming the committed entry and
// LeaderCommitIndex the same index. The follower checks that its log holds
// that entry with that term, exactly as for any AppendEntries, and then
// raises its commit index to it (never past it: the entries after it may
// not be the leader's). An AppendEntries of the current term from its
// leader is what Raft already trusts for this; the nudge only sends it
// sooner. Under load entries are always in flight and no nudge is sent.
//
// A follower that does not hold the entry (catching up, or a new node)
// answers Success=false and logs a warning; it is left alone for a while
// that doubles with each refusal in a row (nudgeMinBackoff..nudgeMaxBackoff)
// and resets with the first nudge it accepts, so a long catch-up logs a
// few lines, not one per commit.
const (
	nudgeMinBackoff = 50 * time.Millisecond
	nudgeMaxBackoff = 2 * time.Second
)

// runNudger is the nudge loop: it wakes at each apply and ends when the
// node closes (Close waits for it). It never waits on a follower: each
// nudge runs on its own, one at a time per follower, bounded by the
// transport's deadline (transportTimeout) and failing at once after Close.
func (n *Node) runNudger() {
	defer close(n.nudgeDone)
	var last uint64 // the highest commit index nudged this term
	var term uint64
	peers := map[raft.ServerID]*nudgePeer{}
	for {
		ch := n.fsm.waitCh()
		select {
		case <-ch:
		case <-n.closed:
			return
		}
		if n.raft.State() != raft.Leader {
			continue
		}
		if t := n.raft.CurrentTerm(); t != term {
			term, last = t, 0
		}
		commit := n.raft.CommitIndex()
		if commit <= last || n.fsm.appliedIndex() < commit || n.raft.LastIndex() != commit {
			continue
		}
		last = commit
		n.nudge(term, commit, peers)
	}
}

// nudgePeer is the nudge state of one follower.
type nudgePeer struct {
	mu       sync.Mutex
	inFlight bool
	until    time.Time     // not nudged before (after a refusal)
	backoff  time.Duration // the next refusal's wait
}

// nudge sends the commit nudge for index (of term) to every other server
// of the configuration that has none in flight and is not in its backoff.
func (n *Node) nudge(term, index uint64, peers map[raft.ServerID]*nudgePeer) {
	fut := n.raft.GetConfiguration() // the latest, without a round to raft's loop
	if fut.Error() != nil || len(fut.Configuration().Servers) < 2 {
		return
	}
	var entry raft.Log
	if err := n.logs.GetLog(index, &entry); err != nil {
		return // compacted away already: nothing to nudge about
	}
	self := raft.ServerID(n.cfg.NodeID)
	local := n.trans.LocalAddr()
	header := raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(self), Addr: n.trans.EncodePeer(self, local)}
	for _, s := range fut.Configuration().Servers {
		if s.ID == self {
			continue
		}
		p := peers[s.ID]
		if p == nil {
			p = &nudgePeer{}
			peers[s.ID] = p
		}
		p.mu.Lock()
		busy := p.inFlight || time.Now().Before(p.until)
		p.inFlight = p.inFlight || !busy
		p.mu.Unlock()
		if busy {
			continue
		}
		req := raft.AppendEntriesRequest{
			RPCHeader:         header,
			Term:              term,
			PrevLogEntry:      index,
			PrevLogTerm:       entry.Term,
			LeaderCommitIndex: index,
		}
		go func() {
			var resp raft.AppendEntriesResponse
			err := n.trans.AppendEntries(s.ID, s.Address, &req, &resp)
			p.mu.Lock()
			p.inFlight = false
			if err != nil || !resp.Success {
				p.backoff = min(max(2*p.backoff, nudgeMinBackoff), nudgeMaxBackoff)
				p.until = time.Now().Add(p.backoff)
			} else {
				p.backoff = 0
			}
			p.mu.Unlock()
		}()
	}
}
