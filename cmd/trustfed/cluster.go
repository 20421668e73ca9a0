package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/consensus"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/server"
)

func newClusterCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("cluster", "Change the set of registry servers, or recover a cluster that lost its quorum")
	cmd.Long = `Registry servers join with "trustfed server -join": a new server is a
non-voter until the leader has seen it caught up, then a voter
("cluster members" lists each member's suffrage). "cluster remove-peer"
takes a server out; the leader refuses a removal that would leave the
voters it can reach short of a quorum. "cluster transfer-leader" moves the
leadership away before maintenance of the leader's machine. "cluster recover" is the offline last resort
for a cluster that lost its quorum for good; "cluster repair" discards the
state of a server that diverged from the cluster's so it rejoins from the
leader's snapshot (see docs/operations.md).`
	cmd.AddCommand(newClusterMembersCmd(a), newClusterRemoveCmd(a), newClusterTransferCmd(a), newClusterRecoverCmd(a), newClusterRepairCmd(a))
	return cmd
}

func newClusterMembersCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the servers of the Raft configuration: suffrage, addresses, leader (admin token)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster().Status(ctx, &trustfedv1.StatusRequest{})
				if err != nil {
					return err
				}
				members := &trustfedv1.StatusResponse{NodeId: resp.NodeId, State: resp.State, Leader: resp.Leader, Members: resp.Members}
				return a.print(members, func(w io.Writer) error { return writeMembers(w, resp) })
			})
		},
	}
}

func newClusterTransferCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer-leader [NODE_ID]",
		Short: "Make the leader hand its leadership to NODE_ID (default: the most up-to-date voter) and step down (admin token)",
		Long: `Ask the leader (through any server) to hand its leadership to another
voter and step down: before stopping or upgrading the leader's machine, so
the cluster does not wait for an election timeout. Without NODE_ID, Raft
picks the most up-to-date voter. Refused (FAILED_PRECONDITION) when no
other voter can take over.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &trustfedv1.TransferLeadershipRequest{}
			if len(args) == 1 {
				req.NodeId = args[0]
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := c.Cluster().TransferLeadership(ctx, req)
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "Leadership transferred; leader now: %s\n", cmp.Or(resp.LeaderId, "(election running)"))
					return err
				})
			})
		},
	}
}

func newClusterRemoveCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "remove-peer NODE_ID",
		Aliases: []string{"remove"},
		Short:   "Remove a server from the cluster (admin token; refused if the rest would lose their quorum)",
		Args:    exactArgs("NODE_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				resp, err := call(ctx, c.Cluster().Leave, &trustfedv1.LeaveRequest{NodeId: args[0]})
				if err != nil {
					return err
				}
				return a.print(resp, func(w io.Writer) error {
					if _, err := fmt.Fprintf(w, "Removed %s from the cluster.\n", args[0]); err != nil {
						return err
					}
					for _, k := range resp.ValidKeyIds {
						// Its key still counts towards a decision's quorum.
						if _, err := fmt.Fprintf(w, "Its node key %s is still valid: revoke it (trustfed key revoke %s %s --since now), or a decision keeps needing its share of signatures.\n", k, args[0], k); err != nil {
							return err
						}
					}
					return nil
				})
			})
		},
	}
}

// recovery is what cluster recover wrote, for -o json.
type recovery struct {
	File    string                     `json:"file"`
	Servers []consensus.RecoveryServer `json:"servers"`
}

func newClusterRecoverCmd(a *app) *cobra.Command {
	var dataDir, nodeID, raftAddr string
	var others []string
	cmd := &cobra.Command{
		Use:   "recover --data-dir DIR [--server ID=RAFT_ADDR ...]",
		Short: "Offline: make a stopped server's next start use a new configuration (after losing quorum)",
		Long: `Write a recovery configuration into the data dir of a STOPPED server of a
cluster that lost its quorum for good. On its next start the server replaces
the Raft configuration with this one (every listed server a voter), keeping
every committed entry of its log, and elects a leader once a quorum of the
listed servers runs.

By default the server alone: its node id and Raft address come from
DIR/addrs.json (override with --node-id and --raft-addr). Add each other
survivor with --server ID=RAFT_ADDR, and run the same command, with the same
list, on each of them before any starts. Servers not listed must never start
again with their old data dir. See docs/operations.md.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return usageErrorf("--data-dir is required")
			}
			self, err := recoverySelf(dataDir, nodeID, raftAddr)
			if err != nil {
				return err
			}
			servers := []consensus.RecoveryServer{self}
			for _, o := range others {
				id, addr, ok := strings.Cut(o, "=")
				if !ok || id == "" {
					return usageErrorf("--server %q: want ID=RAFT_ADDR", o)
				}
				if err := consensus.CheckAddress(addr); err != nil {
					return usageErrorf("--server %s: raft address %v", id, err)
				}
				servers = append(servers, consensus.RecoveryServer{ID: id, RaftAddr: addr})
			}
			raftDir := filepath.Join(dataDir, "raft")
			if err := consensus.PrepareRecovery(raftDir, servers); err != nil {
				return err
			}
			out := recovery{File: filepath.Join(raftDir, consensus.PeersFile), Servers: servers}
			if a.output == outputJSON {
				return writePlainJSON(a.stdout, out)
			}
			t := newTable(a.stdout)
			t.row("Wrote:", out.File)
			for _, s := range servers {
				t.row("Voter:", s.ID+" at "+s.RaftAddr)
			}
			t.row("Next:", "start the server(s) as before; the file is applied once, then deleted")
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped server's data dir (required)")
	cmd.Flags().StringVar(&nodeID, "node-id", "", "this server's node id (default: from DIR/addrs.json)")
	cmd.Flags().StringVar(&raftAddr, "raft-addr", "", "the Raft address this server advertises (default: from DIR/addrs.json)")
	cmd.Flags().StringArrayVar(&others, "server", nil, "another surviving server, as ID=RAFT_ADDR (repeatable)")
	return cmd
}

// recoverySelf is the recovering server itself: flags first, then what it
// wrote to addrs.json when it last listened.
func recoverySelf(dataDir, nodeID, raftAddr string) (consensus.RecoveryServer, error) {
	if nodeID == "" || raftAddr == "" {
		addrs, err := server.ReadAddrs(dataDir)
		if errors.Is(err, os.ErrNotExist) {
			return consensus.RecoveryServer{}, usageErrorf("%s has no addrs.json: give --node-id and --raft-addr", dataDir)
		}
		if err != nil {
			return consensus.RecoveryServer{}, err
		}
		nodeID = cmp.Or(nodeID, addrs.NodeID)
		raftAddr = cmp.Or(raftAddr, addrs.RaftAddr)
	}
	if err := consensus.CheckAddress(raftAddr); err != nil {
		return consensus.RecoveryServer{}, usageErrorf("--raft-addr %v", err)
	}
	if nodeID == "" {
		return consensus.RecoveryServer{}, usageErrorf("--node-id is required (addrs.json names none)")
	}
	return consensus.RecoveryServer{ID: nodeID, RaftAddr: raftAddr}, nil
}
