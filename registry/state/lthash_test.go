package state

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// lanes is h as its 1024 uint16 lanes.
func lanes(h *[ltHashSize]byte) []uint16 {
	out := make([]uint16, ltHashSize/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(h[2*i:])
	}
	return out
}

// The word-wise lane arithmetic equals lane-by-lane arithmetic mod 2^16,
// including the carries and borrows at the top of a lane.
func TestLtHashLaneArithmetic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var h, v ltHash
		for i := range h {
			h[i], v[i] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		if round == 0 { // every lane at its extremes
			for i := range h {
				h[i], v[i] = 0xff, 0xff
			}
		}
		x, y := lanes((*[ltHashSize]byte)(&h)), lanes((*[ltHashSize]byte)(&v))
		sum, diff := h, h
		sum.add((*[ltHashSize]byte)(&v))
		diff.sub((*[ltHashSize]byte)(&v))
		s, d := lanes((*[ltHashSize]byte)(&sum)), lanes((*[ltHashSize]byte)(&diff))
		for i := range x {
			require.Equal(t, x[i]+y[i], s[i], "round %d lane %d: %#x + %#x", round, i, x[i], y[i])
			require.Equal(t, x[i]-y[i], d[i], "round %d lane %d: %#x - %#x", round, i, x[i], y[i])
		}
	}
}

func ltOf(elements ...string) ltHash {
	var h ltHash
	var e ltExpander
	for _, el := range elements {
		h.add(e.expand([]byte(el)))
	}
	return h
}

// The multiset properties the commitment relies on, and fixed vectors so
// the expansion cannot change unnoticed (it is part of the commitment every
// replica must compute alike). The vectors were computed apart from this
// code: sha256sum for the key, openssl enc -aes-256-ctr for the stream, and
// the lanes summed in Python.
func TestLtHashVectors(t *testing.T) {
	var empty ltHash
	require.Equal(t, empty, ltOf(), "the empty set hashes to zero")
	require.Equal(t, ltOf("a", "b", "c"), ltOf("c", "a", "b"), "adding commutes")

	h := ltOf("a", "b", "c")
	var e ltExpander
	h.sub(e.expand([]byte("b")))
	require.Equal(t, ltOf("a", "c"), h, "removing inverts adding")
	h.sub(e.expand([]byte("a")))
	h.sub(e.expand([]byte("c")))
	require.Equal(t, empty, h, "removing every element leaves zero")

	require.NotEqual(t, ltOf("a", "b"), ltOf("a", "c"), "different sets differ")
	require.NotEqual(t, ltOf("ab"), ltOf("a", "b"), "an element is not the sum of its parts")
	require.NotEqual(t, ltOf("a"), ltOf("a", "a"), "a multiset counts repeats")
	require.Equal(t, e.expand([]byte("ab"))[:], e.expand([]byte("a"), []byte("b"))[:], "an element given in pieces is their concatenation")

	for _, tc := range []struct {
		set    []string
		prefix string
	}{
		{nil, "00000000000000000000000000000000"},
		{[]string{"trustfed"}, "df8962277142035ef553c08a7f51889c"},
		{[]string{"a", "b", "c"}, "e8fd956748f8326d53ea3ea64629ae5b"},
	} {
		h := ltOf(tc.set...)
		require.Equal(t, tc.prefix, hex.EncodeToString(h[:16]), "LtHash of %v", tc.set)
	}
}

func BenchmarkLtHashAddRow(b *testing.B) {
	var h ltHash
	var e ltExpander
	row := make([]byte, 300)
	for i := range b.N {
		row[0] = byte(i)
		h.add(e.expand([]byte(tableAgreements), row))
	}
	_ = fmt.Sprint(h[0])
}
