package attestation

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// FuzzOpenCheckpoint feeds signed tree heads as a hostile server (or a
// tampered evidence bundle) could send them to a member, a witness or an
// offline verifier: nothing panics, and nothing but the signed bytes opens.
func FuzzOpenCheckpoint(f *testing.F) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	s, vkey, err := NewCheckpointSigner("trustfed.test/audit", key)
	if err != nil {
		f.Fatal(err)
	}
	signed, err := SignCheckpoint(Checkpoint{Origin: "trustfed.test/audit", Size: 7, Root: bytes.Repeat([]byte{1}, 32)}, s)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte("trustfed.test/audit\n7\nAAAA\n\n— x y\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = SplitNote(data)
		if c, err := ParseCheckpoint(data); err == nil && len(c.Root) != 32 {
			t.Fatalf("parsed a checkpoint with a %d-byte root: %q", len(c.Root), data)
		}
		c, err := OpenCheckpoint(data, "trustfed.test/audit", vkey)
		if err == nil && !bytes.Equal(data, signed) {
			// Only the one note signed above verifies; the note format
			// allows no other encoding of it.
			t.Fatalf("a note other than the signed one opened: %q (%+v)", data, c)
		}
	})
}
