package consensus

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Membership changes are safe by construction (see DESIGN.md, "Membership
// changes"): a server joins as a non-voter (AddNonvoter), the leader's
// promoter makes it a voter once it has caught up, and a change that would
// leave the voters the leader can reach short of a quorum of the new
// configuration is refused with ErrUnsafeChange.

// AddNonvoter adds node id at raftAddr as a non-voter and returns it as now
// configured. Leader only. It first replicates the node's API address, so
// by the time the node is a member every replica can route to it. A known
// id keeps its suffrage (a voter is never demoted); at a new address, its
// address is updated. The promoter makes a non-voter a voter once it has
// caught up.
func (n *Node) AddNonvoter(ctx context.Context, id, raftAddr, apiAddr string) (Server, error) {
	if err := checkMember(id, raftAddr, apiAddr); err != nil {
		return Server{}, fmt.Errorf("add non-voter %s: %w", id, err)
	}
	if err := n.leaderOnly(); err != nil {
		return Server{}, fmt.Errorf("add non-voter %s: %w", id, err)
	}
	if n.fsm.apiAddr(id) != apiAddr {
		if err := n.publishMeta(ctx, id, apiAddr); err != nil {
			return Server{}, fmt.Errorf("add non-voter %s: %w", id, err)
		}
	}
	servers, _, err := n.configuration(ctx)
	if err != nil {
		return Server{}, fmt.Errorf("add non-voter %s: %w", id, err)
	}
	if s, ok := find(servers, id); ok && string(s.Address) == raftAddr {
		n.logger.Debug("add non-voter: already a member", "id", id, "raft_addr", raftAddr, "voter", s.Suffrage == raft.Voter)
		return n.server(s), nil
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultApplyTimeout)
	defer cancel()
	timeout, err := untilDeadline(ctx)
	if err != nil {
		return Server{}, fmt.Errorf("add non-voter %s: %w", id, err)
	}
	f := n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeout)
	if err := n.waitProposal(ctx, "add non-voter "+id, f); err != nil {
		return Server{}, err
	}
	n.logger.Info("added non-voter", "id", id, "raft_addr", raftAddr, "api_addr", apiAddr, "index", f.Index())
	servers, _, err = n.configuration(ctx)
	if err != nil {
		return Server{}, fmt.Errorf("add non-voter %s: %w", id, err)
	}
	s, ok := find(servers, id)
	if !ok {
		return Server{}, fmt.Errorf("add non-voter %s: %w: removed again before the answer", id, ErrUnknownOutcome)
	}
	return n.server(s), nil
}

// AddVoter makes node id at raftAddr a voter. Leader only. The node must
// already be a non-voter at raftAddr that has caught up with the log (join
// it with AddNonvoter; the promoter calls this itself); otherwise the call
// fails with ErrUnsafeChange and changes nothing. Idempotent if id is
// already a voter at raftAddr.
func (n *Node) AddVoter(ctx context.Context, id, raftAddr, apiAddr string) error {
	if err := checkMember(id, raftAddr, apiAddr); err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	if err := n.leaderOnly(); err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	servers, confIndex, err := n.configuration(ctx)
	if err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	s, ok := find(servers, id)
	switch {
	case ok && s.Suffrage == raft.Voter && string(s.Address) == raftAddr:
		n.logger.Debug("add voter: already a voter", "id", id, "raft_addr", raftAddr)
		return nil
	case !ok || s.Suffrage != raft.Nonvoter || string(s.Address) != raftAddr:
		return fmt.Errorf("add voter %s: %w: it is not a non-voter at %s: join it as a non-voter first; the leader promotes it once it has caught up", id, ErrUnsafeChange, raftAddr)
	case n.fsm.apiAddr(id) != apiAddr:
		return fmt.Errorf("add voter %s: %w: its API address is %q, not %q", id, ErrUnsafeChange, n.fsm.apiAddr(id), apiAddr)
	}
	if err := n.checkCaughtUp(ctx, id, confIndex); err != nil {
		return fmt.Errorf("add voter %s: %w: %w", id, ErrUnsafeChange, err)
	}
	return n.promote(ctx, s, servers, confIndex)
}

// promote makes the non-voter s a voter, if the voters reachable after the
// change form a quorum of the new configuration. prevIndex makes raft
// refuse the change if the configuration moved since it was read.
func (n *Node) promote(ctx context.Context, s raft.Server, servers []raft.Server, prevIndex uint64) error {
	id := string(s.ID)
	next := make([]raft.Server, 0, len(servers))
	for _, sv := range servers {
		if sv.ID == s.ID {
			sv.Suffrage = raft.Voter
		}
		next = append(next, sv)
	}
	if err := n.checkQuorum(next, id); err != nil {
		return fmt.Errorf("promote %s: %w", id, err)
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultApplyTimeout)
	defer cancel()
	timeout, err := untilDeadline(ctx)
	if err != nil {
		return fmt.Errorf("promote %s: %w", id, err)
	}
	f := n.raft.AddVoter(s.ID, s.Address, prevIndex, timeout)
	if err := n.waitProposal(ctx, "promote "+id, f); err != nil {
		return err
	}
	n.logger.Info("promoted non-voter to voter", "id", id, "raft_addr", s.Address, "index", f.Index())
	return nil
}

// RemoveServer removes node id from the cluster. Leader only; removing an
// id that is not a member is a no-op, removing a non-voter always works.
// Removing a voter fails with ErrUnsafeChange if the voters left that the
// leader can reach (itself, and every voter its heartbeats reach) would not
// form a quorum of the new configuration: removing a dead voter from three
// with two alive works, removing a live one while another is dead does not.
// Removing the leader itself makes it step down once the change commits.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.leaderOnly(); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	servers, confIndex, err := n.configuration(ctx)
	if err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	s, ok := find(servers, id)
	if !ok {
		return nil
	}
	if s.Suffrage == raft.Voter {
		next := make([]raft.Server, 0, len(servers))
		for _, sv := range servers {
			if sv.ID != s.ID {
				next = append(next, sv)
			}
		}
		if err := n.checkQuorum(next, ""); err != nil {
			return fmt.Errorf("remove server %s: %w", id, err)
		}
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultApplyTimeout)
	defer cancel()
	timeout, err := untilDeadline(ctx)
	if err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	f := n.raft.RemoveServer(raft.ServerID(id), confIndex, timeout)
	if err := n.waitProposal(ctx, "remove server "+id, f); err != nil {
		return err
	}
	n.peers.forget(id)
	n.logger.Info("removed server", "id", id, "index", f.Index())
	return nil
}

// checkQuorum refuses a next configuration whose voters reachable from
// this leader are fewer than its quorum. caughtUp names a server counted
// as reachable whatever the heartbeats say (the non-voter being promoted,
// whose progress was just checked).
func (n *Node) checkQuorum(next []raft.Server, caughtUp string) error {
	var voters, reachable []string
	for _, s := range next {
		if s.Suffrage != raft.Voter {
			continue
		}
		id := string(s.ID)
		voters = append(voters, id)
		if id == n.cfg.NodeID || id == caughtUp || n.peers.reachable(id) {
			reachable = append(reachable, id)
		}
	}
	if len(voters) == 0 {
		return fmt.Errorf("%w: the cluster would have no voter left", ErrUnsafeChange)
	}
	if quorum := len(voters)/2 + 1; len(reachable) < quorum {
		return fmt.Errorf("%w: the new configuration would have %d voters %v, of which only %v are reachable from the leader; a quorum needs %d (remove unreachable voters first, or bring them back)",
			ErrUnsafeChange, len(voters), voters, reachable, quorum)
	}
	return nil
}

// Servers lists the latest cluster configuration (possibly not yet
// committed), with each member's replicated API address. CaughtUp is the
// leader's view and is false on every other node.
func (n *Node) Servers(ctx context.Context) ([]Server, error) {
	servers, _, err := n.configuration(ctx)
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	out := make([]Server, 0, len(servers))
	for _, s := range servers {
		out = append(out, n.server(s))
	}
	return out, nil
}

// server describes s with its API address and, on the leader, whether it
// is caught up.
func (n *Node) server(s raft.Server) Server {
	_, leaderID := n.raft.LeaderWithID()
	sv := Server{
		ID:       string(s.ID),
		RaftAddr: string(s.Address),
		APIAddr:  n.fsm.apiAddr(string(s.ID)),
		Voter:    s.Suffrage == raft.Voter,
		Leader:   s.ID == leaderID,
	}
	if n.raft.State() == raft.Leader {
		switch {
		case sv.ID == n.cfg.NodeID:
			sv.CaughtUp = true
		case sv.Voter:
			sv.CaughtUp = n.peers.reachable(sv.ID)
		default:
			sv.CaughtUp = n.peers.caughtUp(sv.ID)
		}
	}
	return sv
}

// configuration returns the latest configuration and its log index.
func (n *Node) configuration(ctx context.Context) ([]raft.Server, uint64, error) {
	if n.isClosed() {
		return nil, 0, ErrClosed
	}
	f := n.raft.GetConfiguration()
	if err := n.wait(ctx, f); err != nil {
		return nil, 0, mapQueryErr("get configuration", err)
	}
	return f.Configuration().Servers, f.Index(), nil
}

func (n *Node) leaderOnly() error {
	if n.isClosed() {
		return ErrClosed
	}
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	return nil
}

func find(servers []raft.Server, id string) (raft.Server, bool) {
	for _, s := range servers {
		if string(s.ID) == id {
			return s, true
		}
	}
	return raft.Server{}, false
}

// checkMember checks the arguments of a membership change.
func checkMember(id, raftAddr, apiAddr string) error {
	var errs []error
	if id == "" {
		errs = append(errs, errors.New("id is required"))
	}
	if err := CheckAddress(raftAddr); err != nil {
		errs = append(errs, fmt.Errorf("raft address %w", err))
	}
	if err := CheckAddress(apiAddr); err != nil {
		errs = append(errs, fmt.Errorf("API address %w", err))
	}
	return errors.Join(errs...)
}
