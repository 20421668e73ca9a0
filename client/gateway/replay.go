package gateway

import (
	"crypto/sha256"
	"sync"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// replayStore remembers each (sender node, nonce) for ttl (2× the window:
// an envelope older than that is refused by its send_time), in insertion
// order, up to capacity. Full of live entries, it refuses: a flood cannot
// make it forget a nonce early.
type replayStore struct {
	ttl      time.Duration
	capacity int

	mu    sync.Mutex
	seen  map[string]struct{}
	order []replayEntry // FIFO ring
	head  int
	n     int
}

type replayEntry struct {
	key     string
	expires int64
}

func newReplayStore(capacity int, ttl time.Duration) *replayStore {
	return &replayStore{ttl: ttl, capacity: capacity, seen: map[string]struct{}{}, order: make([]replayEntry, 0, min(capacity, 1024))}
}

// add records key at now. It returns false if key was seen (a replay), and
// full if the store holds capacity live entries.
func (r *replayStore) add(key string, now time.Time) (fresh, full bool) {
	t := now.UnixNano()
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.n > 0 && r.order[r.head].expires <= t {
		delete(r.seen, r.order[r.head].key)
		r.order[r.head] = replayEntry{}
		r.head = (r.head + 1) % len(r.order)
		r.n--
	}
	if _, ok := r.seen[key]; ok {
		return false, false
	}
	if r.n >= r.capacity {
		return false, true
	}
	if r.n == len(r.order) { // grow the ring, oldest first
		grown := make([]replayEntry, 0, min(max(2*len(r.order), 16), r.capacity))
		for i := range r.n {
			grown = append(grown, r.order[(r.head+i)%len(r.order)])
		}
		r.order, r.head = grown[:cap(grown)], 0
	}
	r.order[(r.head+r.n)%len(r.order)] = replayEntry{key: key, expires: now.Add(r.ttl).UnixNano()}
	r.n++
	r.seen[key] = struct{}{}
	return true, false
}

// verifiedStatements remembers decision statements whose certificate
// verified, by SHA-256 of the statement bytes, until their valid_until: a
// partner reusing a cached decision costs one hash, not a quorum of
// signature checks.
type verifiedStatements struct {
	capacity int
	mu       sync.Mutex
	m        map[[32]byte]*trustfedv1.DecisionStatement
}

func newVerifiedStatements(capacity int) *verifiedStatements {
	return &verifiedStatements{capacity: capacity, m: map[[32]byte]*trustfedv1.DecisionStatement{}}
}

func (v *verifiedStatements) get(statement []byte, now time.Time) (*trustfedv1.DecisionStatement, [32]byte) {
	h := sha256.Sum256(statement)
	v.mu.Lock()
	defer v.mu.Unlock()
	st := v.m[h]
	if st != nil && !now.Before(st.ValidUntil.AsTime()) {
		delete(v.m, h)
		return nil, h
	}
	return st, h
}

func (v *verifiedStatements) put(h [32]byte, st *trustfedv1.DecisionStatement, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.m) >= v.capacity {
		for k, s := range v.m {
			if !now.Before(s.ValidUntil.AsTime()) {
				delete(v.m, k)
			}
		}
		if len(v.m) >= v.capacity {
			return
		}
	}
	v.m[h] = st
}
