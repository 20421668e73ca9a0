// Package consensus runs a hashicorp/raft node that replicates opaque
// commands into a deterministic StateMachine. It knows nothing about the
// domain: callers hand it bytes and get back what their StateMachine's Apply
// returned.
//
// A node is created with New, driven by Run and stopped with Close:
//
//	n, err := consensus.New(consensus.Config{
//		NodeID: "n1", DataDir: dir, BindAddr: "10.0.0.1:7000",
//		APIAddr: "10.0.0.1:8443", Bootstrap: true,
//		StateMachine: sm, LeaderClient: lc, TLS: tlsConf,
//	})
//	...
//	go n.Run(ctx)      // leadership loop: barrier, readiness, leader tasks
//	defer n.Close()
//
// Writes go through Apply on the leader (ErrNotLeader elsewhere). Reads
// that must be linearizable call LinearizableRead first, on any node, and
// then read the local state: it obtains a read index (from the leader over
// LeaderClient when on a follower) and waits until the local state machine
// has applied it. A leader serves reads only once ready: the barrier of its
// term has completed (IsLeader, ErrNotReady).
//
// Every node's API address is replicated in the log, so any node can tell
// clients where the leader's API lives (Leader, Servers).
//
// Servers join as non-voters (AddNonvoter); the leader promotes each to
// voter once it has caught up. Changes that would leave the cluster without
// a reachable quorum are refused (ErrUnsafeChange). A cluster that lost its
// quorum for good is recovered offline with PrepareRecovery.
//
// The invariants behind this, and the hashicorp/raft behaviour they guard
// against, are listed in DESIGN.md in this directory.
package consensus
