package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	bolt "go.etcd.io/bbolt"
)

// Hasher is the RFC 6962 hasher (SHA-256) of the log.
var Hasher = rfc6962.DefaultHasher

var (
	bucketEntries = []byte("entries") // seq of a chunk's first entry -> chunk (chunk.go)
	bucketNodes   = []byte("nodes")   // level >= minStoredLevel, index -> hash of a complete subtree
	bucketLabels  = []byte("labels")  // label, block of 256 -> bitmap
	bucketMeta    = []byte("meta")
	keySize       = []byte("size")
	keyLastIndex  = []byte("last_index")
	keyFormat     = []byte("format")

	allBuckets = [][]byte{bucketEntries, bucketNodes, bucketLabels, bucketMeta}

	// bucketAttrs held the entries' times and labels before format 2; a
	// file without entries still having it is upgraded by dropping it.
	bucketAttrs = []byte("attrs")
)

// format is the on-disk layout this package reads and writes, recorded
// in meta "format" when a file is created: 2 is entries in chunks (1, never
// recorded, was one entry per key with an attrs bucket).
const format = 2

var (
	// ErrNotFound is returned for an index or size beyond the log.
	ErrNotFound = errors.New("not in the log")
	// ErrInvalid is returned for input the log refuses: Raft indexes out of
	// order, entry times going back, bad labels, bad ranges.
	ErrInvalid = errors.New("invalid audit log input")
	// ErrRootMismatch is returned by Replace when the rebuilt log does not
	// have the expected root hash.
	ErrRootMismatch = errors.New("audit log root mismatch")
	// ErrFormat is returned by Open for a file holding entries in a layout
	// this package does not read. There is no migration: a log is derived
	// from the Raft log and snapshots and is rebuilt from them instead.
	ErrFormat = errors.New("audit log written in an older format")
)

// Log is an append-only Merkle log on disk. Writes (AppendBatches, Replace)
// must come from one goroutine at a time (the state machine) and are
// serialised anyway; reads and proofs may run concurrently with them.
type Log struct {
	path    string
	factory *compact.RangeFactory

	// mu guards db: readers hold the read lock for their whole read
	// transaction; Replace swaps the file and Close closes it under the
	// write lock. Callbacks of Range, Scan and Entries run under the read
	// lock and must not call back into the Log (but Size, Root and
	// LastIndex, which take no lock).
	mu sync.RWMutex
	db *bolt.DB

	// wmu serialises writers and guards the writer state below.
	wmu sync.Mutex
	// tree is the compact range [0, size): the hashes of the perfect
	// subtrees whose concatenation is the whole log.
	tree *compact.Range
	// lastTime is the time of the last entry (zero when empty).
	lastTime time.Time

	// head is what readers see of the tree without a lock; it is replaced,
	// never modified, after each write.
	head atomic.Pointer[head]
	// noSync: appends are not fsynced (see Options).
	noSync bool
}

// Sync flushes every append to disk (a no-op unless opened with NoSync).
func (l *Log) Sync() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if err := l.db.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	return nil
}

// head is the published state of the log.
type head struct {
	size      uint64
	lastIndex uint64
	root      []byte
}

// Options tune how a log is kept.
type Options struct {
	// NoSync skips the fsync of every append: for a log that is derived
	// from another durable log (trustfed's is rebuilt from the Raft log and
	// snapshots after a crash), with Sync called before that source is
	// compacted.
	NoSync bool
}

// Open opens (or creates) the log at path and rebuilds its tree from the
// stored subtree hashes. Every append is synced to disk.
func Open(path string) (*Log, error) { return OpenWith(path, Options{}) }

// OpenWith is Open with options.
func OpenWith(path string, opts Options) (*Log, error) {
	l := &Log{path: path, factory: &compact.RangeFactory{Hash: Hasher.HashChildren}, noSync: opts.NoSync}
	db, st, err := l.openDB(path, opts.NoSync)
	if err != nil {
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	// A Replace interrupted by a crash leaves its half-built file behind.
	if err := os.Remove(replacePath(path)); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = db.Close()
		return nil, fmt.Errorf("open audit log %s: %w", path, err)
	}
	l.db = db
	l.install(st)
	return l, nil
}

// Close closes the log.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.db.Close()
}

// Path returns the file path.
func (l *Log) Path() string { return l.path }

// Size is the number of entries.
func (l *Log) Size() uint64 { return l.head.Load().size }

// Root is the root hash of the whole log (the empty tree's hash when empty).
func (l *Log) Root() []byte { return bytes.Clone(l.head.Load().root) }

// LastIndex is the Raft index of the last batch appended (0 for a new log).
func (l *Log) LastIndex() uint64 { return l.head.Load().lastIndex }

// state is what a writer needs of an open file.
type state struct {
	tree      *compact.Range
	lastTime  time.Time
	lastIndex uint64
}

// openDB opens the bbolt file at path, creates the buckets and reads the
// writer state from it.
func (l *Log) openDB(path string, noSync bool) (*bolt.DB, state, error) {
	// The freelist is rebuilt at open rather than written at every commit
	// (as etcd runs bbolt): appends commit many times a second.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: noSync, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, state{}, err
	}
	// Create the buckets of a new file; do not write to an existing one.
	var create bool
	err = db.View(func(tx *bolt.Tx) (err error) {
		create, err = checkFormat(tx)
		return err
	})
	if err == nil && create {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			if tx.Bucket(bucketAttrs) != nil {
				if err := tx.DeleteBucket(bucketAttrs); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(keyFormat, seqKey(format))
		})
	}
	var st state
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error { return l.readState(tx, &st) })
	}
	if err != nil {
		_ = db.Close()
		return nil, state{}, err
	}
	return db, st, nil
}

// checkFormat checks that the file of tx is in this package's format and
// reports whether it lacks buckets or the format marker: a new file, or
// one holding no entries.
func checkFormat(tx *bolt.Tx) (create bool, err error) {
	for _, b := range allBuckets {
		create = create || tx.Bucket(b) == nil
	}
	var marker []byte
	mb := tx.Bucket(bucketMeta)
	if mb != nil {
		marker = mb.Get(keyFormat)
	}
	switch {
	case marker == nil:
		empty := mb == nil || metaUint(tx, keySize) == 0
		if eb := tx.Bucket(bucketEntries); eb != nil {
			k, _ := eb.Cursor().First()
			empty = empty && k == nil
		}
		if !empty {
			return false, fmt.Errorf("%w: entries without a format marker, this build reads format %d", ErrFormat, format)
		}
		return true, nil
	case len(marker) != 8 || binary.BigEndian.Uint64(marker) != format:
		return false, fmt.Errorf("%w: format %x, this build reads format %d", ErrFormat, marker, format)
	}
	return create, nil
}

// readState reads the writer state of an open file.
func (l *Log) readState(tx *bolt.Tx, st *state) error {
	size := metaUint(tx, keySize)
	st.lastIndex = metaUint(tx, keyLastIndex)
	hashes, err := subtreeHashes(tx, 0, size)
	if err != nil {
		return err
	}
	if st.tree, err = l.factory.NewRange(0, size, hashes); err != nil {
		return err
	}
	if size > 0 {
		if st.lastTime, err = newEntryReader(tx).time(size - 1); err != nil {
			return err
		}
	}
	return nil
}

// install makes st the writer state and publishes its head. The caller
// holds wmu (or owns l exclusively).
func (l *Log) install(st state) {
	l.tree, l.lastTime = st.tree, st.lastTime
	l.head.Store(&head{size: st.tree.End(), lastIndex: st.lastIndex, root: rootOf(st.tree)})
}

// rootOf is the root hash of the compact range [0, end).
func rootOf(r *compact.Range) []byte {
	root, _ := r.GetRootHash(nil)
	if root == nil {
		return Hasher.EmptyRoot()
	}
	return root
}

// view runs fn in a read transaction under the read lock.
func (l *Log) view(fn func(tx *bolt.Tx) error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.db.View(fn)
}
