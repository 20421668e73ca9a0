package consensus

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// AddVoter adds node id at raftAddr as a voter. Leader only. It first
// replicates the node's API address, so by the time the node is a member
// every replica can route to it. Idempotent if id is already a voter at
// raftAddr; a known id at a new address has its address updated.
func (n *Node) AddVoter(ctx context.Context, id, raftAddr, apiAddr string) error {
	if id == "" || raftAddr == "" || apiAddr == "" {
		return errors.New("add voter: id, raftAddr and apiAddr are required")
	}
	if n.isClosed() {
		return fmt.Errorf("add voter %s: %w", id, ErrClosed)
	}
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("add voter %s: %w", id, ErrNotLeader)
	}
	if n.fsm.apiAddr(id) != apiAddr {
		if err := n.publishMeta(ctx, id, apiAddr); err != nil {
			return fmt.Errorf("add voter %s: %w", id, err)
		}
	}
	servers, err := n.configuration(ctx)
	if err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	for _, s := range servers {
		if string(s.ID) == id && s.Suffrage == raft.Voter && string(s.Address) == raftAddr {
			n.logger.Debug("add voter: already a voter", "id", id, "raft_addr", raftAddr)
			return nil
		}
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultApplyTimeout)
	defer cancel()
	timeout, err := untilDeadline(ctx)
	if err != nil {
		return fmt.Errorf("add voter %s: %w", id, err)
	}
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeout)
	if err := n.waitProposal(ctx, "add voter "+id, f); err != nil {
		return err
	}
	n.logger.Info("added voter", "id", id, "raft_addr", raftAddr, "api_addr", apiAddr, "index", f.Index())
	return nil
}

// RemoveServer removes node id from the cluster. Leader only; removing an
// id that is not a member is a no-op. Removing the leader itself makes it
// step down once the change commits.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if n.isClosed() {
		return fmt.Errorf("remove server %s: %w", id, ErrClosed)
	}
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("remove server %s: %w", id, ErrNotLeader)
	}
	servers, err := n.configuration(ctx)
	if err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	member := false
	for _, s := range servers {
		member = member || string(s.ID) == id
	}
	if !member {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx, defaultApplyTimeout)
	defer cancel()
	timeout, err := untilDeadline(ctx)
	if err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	f := n.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	if err := n.waitProposal(ctx, "remove server "+id, f); err != nil {
		return err
	}
	n.logger.Info("removed server", "id", id, "index", f.Index())
	return nil
}

// Servers lists the latest cluster configuration (possibly not yet
// committed), with each member's replicated API address.
func (n *Node) Servers(ctx context.Context) ([]Server, error) {
	servers, err := n.configuration(ctx)
	if err != nil {
		return nil, fmt.Errorf("servers: %w", err)
	}
	_, leaderID := n.raft.LeaderWithID()
	meta := n.fsm.metadata()
	out := make([]Server, 0, len(servers))
	for _, s := range servers {
		out = append(out, Server{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			APIAddr:  meta[string(s.ID)],
			Voter:    s.Suffrage == raft.Voter,
			Leader:   s.ID == leaderID,
		})
	}
	return out, nil
}

func (n *Node) configuration(ctx context.Context) ([]raft.Server, error) {
	if n.isClosed() {
		return nil, ErrClosed
	}
	f := n.raft.GetConfiguration()
	if err := n.wait(ctx, f); err != nil {
		return nil, mapQueryErr("get configuration", err)
	}
	return f.Configuration().Servers, nil
}
