package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a tree head in the C2SP tlog-checkpoint format: the log's
// origin (its name), size and root hash. Signed, it is a signed note.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

// Marshal is the checkpoint's note text: "<origin>\n<size>\n<base64 root>\n".
func (c Checkpoint) Marshal() []byte {
	return fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

// ParseCheckpoint reads a checkpoint's note text (extension lines after the
// root are allowed and ignored, as C2SP says).
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	lines := strings.SplitN(string(text), "\n", 4)
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("checkpoint: want origin, size and root hash lines")
	}
	if lines[0] == "" {
		return Checkpoint{}, errors.New("checkpoint: empty origin")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint: size %q is not a decimal number", lines[1])
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != 32 {
		return Checkpoint{}, fmt.Errorf("checkpoint: root hash %q is not 32 bytes of base64", lines[2])
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// signer signs notes with an ed25519 key (note's own signer needs the key in
// its text format; the registry holds a raw key).
type signer struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s signer) Name() string                    { return s.name }
func (s signer) KeyHash() uint32                 { return s.hash }
func (s signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// NewSigner returns a note signer named name (the log's origin) for key,
// and the verifier key ("<name>+<hash>+<base64>") to publish. A note
// signature is ed25519 over the note's text, which holds no NUL byte, so it
// can never be mistaken for one of trustfed's purpose-separated signatures
// (attestation.Sign), whose signed bytes always do.
func NewSigner(name string, key ed25519.PrivateKey) (note.Signer, string, error) {
	vkey, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, "", fmt.Errorf("audit signer: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("audit signer: %w", err)
	}
	return signer{name: name, hash: v.KeyHash(), key: key}, vkey, nil
}

// SignCheckpoint signs c as a note.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(c.Marshal())}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the given verifier keys
// (at least one signature must verify and none may be invalid) and checks
// its origin.
func OpenCheckpoint(signed []byte, origin string, vkeys ...string) (Checkpoint, error) {
	verifiers := make([]note.Verifier, 0, len(vkeys))
	for _, k := range vkeys {
		v, err := note.NewVerifier(k)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("verifier key %q: %w", k, err)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("signed checkpoint: %w", err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("checkpoint of log %q, want %q", c.Origin, origin)
	}
	return c, nil
}

// Equal reports whether two checkpoints name the same tree.
func (c Checkpoint) Equal(o Checkpoint) bool {
	return c.Origin == o.Origin && c.Size == o.Size && bytes.Equal(c.Root, o.Root)
}
