package attestation

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is a tree head of the audit log in the C2SP tlog-checkpoint
// format: the log's origin (its name), size and root hash. Signed, it is a
// signed note (golang.org/x/mod/sumdb/note); witnesses add C2SP
// tlog-cosignature lines (github.com/transparency-dev/formats/note).
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
	// State is the trust-state extension line of a certified checkpoint
	// (nil in a checkpoint signed by the cluster-wide registry key).
	State *CheckpointState
}

// Marshal is the checkpoint's note text: "<origin>\n<size>\n<base64 root>\n",
// then the state extension line when c.State is set.
func (c Checkpoint) Marshal() []byte {
	b := fmt.Appendf(nil, "%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
	if c.State != nil {
		b = c.State.appendLine(b)
	}
	return b
}

// Equal reports whether two checkpoints name the same tree.
func (c Checkpoint) Equal(o Checkpoint) bool {
	return c.Origin == o.Origin && c.Size == o.Size && bytes.Equal(c.Root, o.Root)
}

// ParseCheckpoint reads a checkpoint's note text. Extension lines after the
// root are allowed, as C2SP says; a trust-state line (CheckpointState) is
// read into State, others are ignored.
func ParseCheckpoint(text []byte) (Checkpoint, error) {
	c, err := parseTreeHead(text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.State, err = parseStateLine(text); err != nil {
		return Checkpoint{}, err
	}
	return c, nil
}

func parseTreeHead(text []byte) (Checkpoint, error) {
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

// noteSigner signs notes with a raw ed25519 key (note's own signer wants
// the key in its text format).
type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func (s noteSigner) Name() string                    { return s.name }
func (s noteSigner) KeyHash() uint32                 { return s.hash }
func (s noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// CheckpointVerifierKey is the note verifier key ("<name>+<hash>+<base64>")
// of the registry key pub for the log named origin.
func CheckpointVerifierKey(origin string, pub ed25519.PublicKey) (string, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("checkpoint verifier key: %w", err)
	}
	return vkey, nil
}

// NewCheckpointSigner returns a note signer named origin for the registry
// key, and the verifier key to publish. A note signature is ed25519 over
// the note's text, which holds no NUL byte, so it can never be mistaken for
// one of trustfed's purpose-separated signatures (Sign), whose signed bytes
// always do.
func NewCheckpointSigner(origin string, key ed25519.PrivateKey) (note.Signer, string, error) {
	vkey, err := CheckpointVerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, "", err
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("checkpoint signer: %w", err)
	}
	return noteSigner{name: origin, hash: v.KeyHash(), key: key}, vkey, nil
}

// SignCheckpoint signs c as a note.
func SignCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(c.Marshal())}, s)
}

// OpenCheckpoint verifies a signed checkpoint with the given verifier keys
// (at least one signature must verify and none by a known key may be
// invalid; signatures by unknown keys are ignored) and checks its origin.
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

// WitnessVerifierKey is the C2SP tlog-cosignature verifier key of a
// witness named name (trustfed uses the organisation id) holding pub.
func WitnessVerifierKey(name string, pub ed25519.PublicKey) (string, error) {
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return "", fmt.Errorf("witness key %s: %w", name, err)
	}
	vkey, err = fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		return "", fmt.Errorf("witness key %s: %w", name, err)
	}
	return vkey, nil
}

func witnessVerifier(name string, pub ed25519.PublicKey) (note.Verifier, error) {
	vkey, err := WitnessVerifierKey(name, pub)
	if err != nil {
		return nil, err
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("witness key %s: %w", name, err)
	}
	return v, nil
}

// Cosign adds the witness name's C2SP tlog-cosignature (ed25519, timestamped
// now by the library) to a signed checkpoint. It does not check the
// checkpoint: a witness must first verify the registry's signature and the
// consistency with the last checkpoint it cosigned (see client.Witness).
// It returns the note with the cosignature appended and the signature line.
func Cosign(signed []byte, name string, key ed25519.PrivateKey) ([]byte, string, error) {
	pub := key.Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		return nil, "", fmt.Errorf("cosign as %s: %w", name, err)
	}
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + name + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...))
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, "", fmt.Errorf("cosign as %s: %w", name, err)
	}
	text, _, err := SplitNote(signed)
	if err != nil {
		return nil, "", err
	}
	alone, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		return nil, "", fmt.Errorf("cosign as %s: %w", name, err)
	}
	_, lines, err := SplitNote(alone)
	if err != nil || len(lines) != 1 {
		return nil, "", fmt.Errorf("cosign as %s: unexpected note", name)
	}
	out := append(bytes.Clone(signed), lines[0]...)
	out = append(out, '\n')
	return out, lines[0], nil
}

// VerifyCosignature checks one cosignature line by the witness name
// (holding pub) over the checkpoint in signed, and returns its timestamp.
func VerifyCosignature(signed []byte, line, name string, pub ed25519.PublicKey) (time.Time, error) {
	text, _, err := SplitNote(signed)
	if err != nil {
		return time.Time{}, err
	}
	v, err := witnessVerifier(name, pub)
	if err != nil {
		return time.Time{}, err
	}
	n, err := note.Open([]byte(text+"\n"+line+"\n"), note.VerifierList(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("cosignature by %s: %w", name, err)
	}
	ts, err := fnote.CoSigV1Timestamp(n.Sigs[0])
	if err != nil {
		return time.Time{}, fmt.Errorf("cosignature by %s: %w", name, err)
	}
	return ts, nil
}

// Witness is a witness the reader of a checkpoint trusts.
type Witness struct {
	Name string
	Key  ed25519.PublicKey
}

// OpenWitnessedCheckpoint verifies a checkpoint signed by the registry
// (vkey) and counts the valid cosignatures by the given witnesses: fewer
// than need is an error. A cosignature by a listed witness that does not
// verify is an error too.
func OpenWitnessedCheckpoint(signed []byte, origin, vkey string, witnesses []Witness, need int) (Checkpoint, []string, error) {
	rv, err := note.NewVerifier(vkey)
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("registry verifier key: %w", err)
	}
	verifiers := []note.Verifier{rv}
	for _, w := range witnesses {
		v, err := witnessVerifier(w.Name, w.Key)
		if err != nil {
			return Checkpoint{}, nil, err
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("signed checkpoint: %w", err)
	}
	var registrySigned bool
	var cosigners []string
	for _, s := range n.Sigs {
		if s.Name == rv.Name() && s.Hash == rv.KeyHash() {
			registrySigned = true
		} else {
			cosigners = append(cosigners, s.Name)
		}
	}
	if !registrySigned {
		return Checkpoint{}, nil, errors.New("signed checkpoint: no valid registry signature")
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Origin != origin {
		return Checkpoint{}, nil, fmt.Errorf("checkpoint of log %q, want %q", c.Origin, origin)
	}
	if len(cosigners) < need {
		return Checkpoint{}, cosigners, fmt.Errorf("checkpoint cosigned by %d of the trusted witnesses %v, need %d", len(cosigners), cosigners, need)
	}
	return c, cosigners, nil
}

// SplitNote splits a signed note into its text (with its final newline)
// and its signature lines ("— <name> <base64>").
func SplitNote(signed []byte) (string, []string, error) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return "", nil, errors.New("signed note: no signature block")
	}
	sigs := strings.Split(strings.TrimSuffix(string(signed[i+2:]), "\n"), "\n")
	return string(signed[:i+1]), sigs, nil
}

// SignedBy reports whether a note signature line is by the key named name.
func SignedBy(line, name string) bool { return strings.HasPrefix(line, "— "+name+" ") }
