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
// complete subtree hash of 16 leaves or more in a bbolt file, so a proof costs O(log n) reads
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
//	entries  seq of a chunk's first entry -> chunk: the entries [seq, seq+count),
//	         at most 256, their records at most 32 KiB unless one entry is larger
//	         (chunk.go):
//	           count (2 bytes) ‖ count × (attrs end (4 bytes) ‖ record end (4 bytes)) ‖ records
//	         the ends relative to the first record, each record
//	           time (8-byte Unix seconds ‖ 4-byte nanoseconds) ‖ labels (1-byte length ‖ label)* ‖ leaf bytes
//	         where the leaf bytes are what the tree hashes. Each AppendBatches call
//	         (each transaction of Replace) writes its entries as new chunks, and a
//	         chunk is never rewritten; entry seq is in the chunk at the greatest key
//	         <= seq.
//	nodes    level (1 byte) ‖ index (8 bytes) -> hash of a complete subtree of 16
//	         leaves or more (smaller ones are hashed from their entries when needed)
//	labels   label length (1 byte) ‖ label ‖ seq/256 (8 bytes) -> 32-byte bitmap of the
//	         entries of that block of 256 carrying the label: the label index
//	meta     "size" -> entry count, "last_index" -> Raft index of the last batch,
//	         "format" -> 2, the layout above (8 bytes each)
//
// Only the leaf bytes and nodes are authenticated by the tree; entry times,
// labels and the label index are a local index, checked by Verify.
//
// Files written before format 2 (one entry per key in entries, times and
// labels in a bucket attrs, no "format") are refused by Open with
// ErrFormat, as is an unknown format; a file of that layout holding no
// entries is upgraded in place. There is no migration: the server moves a
// file it cannot open aside and rebuilds the log from the Raft snapshot
// (Replace) and the Raft log (server openAuditLog), as after a crash
// that left it unreadable.
package audit
