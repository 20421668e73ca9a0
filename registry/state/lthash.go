package state

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// ltHashSize is the size of an LtHash16 value: 1024 lanes of 16 bits.
const ltHashSize = 2048

// ltHash is an LtHash16 value (Bellare–Micciancio's lattice-based
// homomorphic multiset hash, as specified by Facebook, "Securing Update
// Propagation with Homomorphic Hashing", ePrint 2019/227): 1024
// little-endian uint16 lanes. The hash of a multiset is the lane-wise sum,
// mod 2^16, of the expansions of its elements, so an element is added or
// removed in O(1) whatever the size of the set, and the order of additions
// does not matter. Unlike a plain sum of digests modulo 2^256, finding two
// multisets with the same sum is a lattice (short integer solution)
// problem, not a generalised birthday one (Wagner). Each element the trust
// state adds is a distinct row (a table's primary key is unique), so the
// multiset is a set and the 2^16-fold repetition weakness of LtHash16
// never applies.
//
// Written here rather than imported: no maintained Go module implements it
// (lukechampine.com/lthash, a 60-line unversioned repository, is not even
// served by the module proxy), and the primitive is a few lines over the
// standard library.
type ltHash [ltHashSize]byte

// ltExpandDomain starts the input of every element's expansion.
const ltExpandDomain = "trustfed lthash16 element v1\n"

// ltExpander expands elements into ltHashSize-byte vectors: the XOF is
// AES-256-CTR (zero IV) keyed by SHA-256(ltExpandDomain || element), a
// hash-then-PRG construction. It is not SHAKE256 or BLAKE2X on purpose:
// every write expands two vectors per row it changes and a restore or a
// full check expands every row, and on this hardware (AES-NI, SHA-NI) the
// expansion costs about 1.1 µs against 20–26 µs for SHAKE256 and 19–40 µs
// for BLAKE2Xb (pure Go). Its collision resistance is SHA-256's (128
// bits), which is what the commitment built on it (a SHA-256) has anyway.
// The zero value is ready; it is not safe for concurrent use.
type ltExpander struct {
	vec [ltHashSize]byte
	// key is the last element's AES key, kept here: a local one escapes
	// to the heap (the cipher takes it as a slice), one allocation a row.
	key [sha256.Size]byte
}

// ltZero is the plaintext the key stream is XORed into, and its first
// block the counter's initial value (zero IV); never written.
var ltZero [ltHashSize]byte

// expand returns the vector of element (valid until the next call).
func (e *ltExpander) expand(element ...[]byte) *[ltHashSize]byte {
	h := sha256.New()
	h.Write([]byte(ltExpandDomain))
	for _, p := range element {
		h.Write(p)
	}
	h.Sum(e.key[:0])
	return e.stream()
}

// expandSeeded returns the vector of the element whose expansion input
// (ltExpandDomain || element) is seed, built by the caller in one buffer.
func (e *ltExpander) expandSeeded(seed []byte) *[ltHashSize]byte {
	e.key = sha256.Sum256(seed)
	return e.stream()
}

// stream fills the vector with the AES-256-CTR key stream of e.key.
func (e *ltExpander) stream() *[ltHashSize]byte {
	block, err := aes.NewCipher(e.key[:])
	if err != nil {
		panic(fmt.Sprintf("state: AES-256 with a 32-byte key: %v", err)) // cannot happen
	}
	cipher.NewCTR(block, ltZero[:aes.BlockSize]).XORKeyStream(e.vec[:], ltZero[:])
	return &e.vec
}

// The lane arithmetic works on 64-bit words, four lanes at a time: the top
// bit of each lane is handled apart so no carry or borrow crosses a lane.
const (
	laneHigh = 0x8000_8000_8000_8000
	laneLow  = ^uint64(laneHigh)
)

// add adds v to h lane-wise mod 2^16.
func (h *ltHash) add(v *[ltHashSize]byte) {
	for i := 0; i < ltHashSize; i += 8 {
		x, y := binary.LittleEndian.Uint64(h[i:]), binary.LittleEndian.Uint64(v[i:])
		binary.LittleEndian.PutUint64(h[i:], ((x&laneLow)+(y&laneLow))^((x^y)&laneHigh))
	}
}

// sub subtracts v from h lane-wise mod 2^16.
func (h *ltHash) sub(v *[ltHashSize]byte) {
	for i := 0; i < ltHashSize; i += 8 {
		x, y := binary.LittleEndian.Uint64(h[i:]), binary.LittleEndian.Uint64(v[i:])
		binary.LittleEndian.PutUint64(h[i:], ((x|laneHigh)-(y&laneLow))^((x^^y)&laneHigh))
	}
}
