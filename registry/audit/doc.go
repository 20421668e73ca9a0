// Package audit is trustfed's tamper-evident audit log (AG-783 R8, E01–E07,
// Scenario C): an append-only Merkle tree with RFC 6962 hashing, kept on
// disk, with inclusion and consistency proofs and signed tree heads in the
// C2SP tlog-checkpoint format, so that anyone holding the registry's public
// key can check that the history they are shown is complete and was never
// rewritten.
//
// The tree arithmetic (compact ranges, proof shapes, verification) is
// github.com/transparency-dev/merkle; signed notes are
// golang.org/x/mod/sumdb/note. This package stores the leaves and every
// complete subtree hash in a bbolt file, so a proof costs O(log n) reads
// however large the log grows.
//
// The replicated state machine is the only writer: every Raft apply batch
// becomes one AppendBatches call (one transaction, one fsync: group commit),
// stamped with the Raft index of its last entry so that re-applying entries
// after a restart is a no-op. Each entry also carries a time and index
// labels, so that it can be found by time (SeqAtTime) and by label (Scan)
// without reading the whole log. A Raft snapshot streams the log with Range;
// restoring one rebuilds it in a new file and swaps it in (Replace).
//
// # On-disk layout
//
// One bbolt file, sequence numbers as 8-byte big-endian keys:
//
//	entries  seq -> leaf bytes (what the tree hashes)
//	nodes    level (1 byte) ‖ index (8 bytes) -> hash of a complete subtree
//	attrs    seq -> time (8-byte Unix seconds ‖ 4-byte nanoseconds) ‖ labels (1-byte length ‖ label)*
//	labels   label length (1 byte) ‖ label ‖ seq -> empty: the label index
//	meta     "size" -> entry count, "last_index" -> Raft index of the last batch
//
// Only entries and nodes are authenticated by the tree; attrs and labels are
// a local index, checked by Verify.
package audit
