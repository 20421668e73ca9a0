// Package state is the registry's replicated state: a deterministic store of
// organisations, agreements and tokens, and the FSM that applies Raft commands
// to it.
//
// Everything here is deterministic: no clock, no randomness, no Raft, no
// gRPC, and no dependence on map iteration order. Time, identifiers and the
// authenticated principal arrive inside the command, stamped by the leader
// before it proposed. Every replica that applies the same log therefore holds
// the same state, byte for byte in its snapshot.
//
// The store is an MVCC in-memory database (hashicorp/go-memdb): a read
// transaction is a consistent point-in-time view that also carries the Raft
// index it reflects, and a snapshot is O(1) to take.
package state
