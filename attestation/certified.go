package attestation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"golang.org/x/mod/sumdb/note"
)

// A certified checkpoint is a checkpoint note whose text also commits to
// the trust state (an extension line after the root, C2SP allows them) and
// that carries one signature line per registry node that vouched for it,
// each with that node's own endorsed key. A node signs only if its own
// audit log has that root at that size and its own state commitment at
// that index is the one in the line; a quorum of the nodes holding an
// endorsed key valid at the checkpoint's time makes it certified
// (VerifyCertifiedCheckpoint). No single node, and no key in the replicated
// state, can make one.

// StateLinePrefix starts the trust-state extension line of a checkpoint:
// "trustfed-state <index> <base64 commitment> <RFC 3339 time>".
const StateLinePrefix = "trustfed-state "

// NodeSignerPrefix starts the note signature name of a registry node:
// "trustfed-node/<node id>".
const NodeSignerPrefix = "trustfed-node/"

// ErrCertification: a checkpoint is not certified by a quorum of registry
// nodes (too few valid node signatures, or none of the keys given).
var ErrCertification = errors.New("checkpoint not certified")

// CheckpointState is what a certified checkpoint says of the trust state:
// the commitment (state.Reader.Commitment) of the view after the Raft
// entry at Index, and the time the checkpoint was made (node keys must be
// valid then).
type CheckpointState struct {
	Index      uint64
	Commitment []byte
	Time       time.Time
}

func (s *CheckpointState) appendLine(b []byte) []byte {
	return fmt.Appendf(b, "%s%d %s %s\n", StateLinePrefix, s.Index, base64.StdEncoding.EncodeToString(s.Commitment),
		s.Time.UTC().Format(time.RFC3339))
}

// parseStateLine reads the trust-state extension line, if the text has one
// (the line after the root).
func parseStateLine(text []byte) (*CheckpointState, error) {
	lines := strings.SplitN(string(text), "\n", 5)
	if len(lines) < 5 || !strings.HasPrefix(lines[3], StateLinePrefix) {
		return nil, nil
	}
	f := strings.Split(strings.TrimPrefix(lines[3], StateLinePrefix), " ")
	if len(f) != 3 {
		return nil, fmt.Errorf("checkpoint: state line %q: want index, commitment and time", lines[3])
	}
	idx, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || strconv.FormatUint(idx, 10) != f[0] || idx == 0 {
		return nil, fmt.Errorf("checkpoint: state index %q is not a positive decimal number", f[0])
	}
	c, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil || len(c) != sha256.Size {
		return nil, fmt.Errorf("checkpoint: state commitment %q is not 32 bytes of base64", f[1])
	}
	t, err := time.Parse(time.RFC3339, f[2])
	if err != nil || t.UTC().Format(time.RFC3339) != f[2] {
		return nil, fmt.Errorf("checkpoint: state time %q is not RFC 3339 UTC seconds", f[2])
	}
	return &CheckpointState{Index: idx, Commitment: c, Time: t.UTC()}, nil
}

// NodeSignerName is the note signature name of registry node nodeID.
func NodeSignerName(nodeID string) string { return NodeSignerPrefix + nodeID }

// nodeKeyHash is the note key hash of a node key: the first 4 bytes of
// SHA-256(name "\n" 0xff "trustfed-node/v1" pub). 0xff marks a signature
// type outside the C2SP registry: the signature is ed25519 over
// SignedMessage(PurposeCheckpoint, note text), so it goes through a node's
// Signer (a hardware key signs only purpose-separated messages) and can
// never be replayed as a plain note signature.
func nodeKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n\xfftrustfed-node/v1"))
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// nodeVerifier is a note.Verifier of one node key.
type nodeVerifier struct {
	name string
	hash uint32
	pub  ed25519.PublicKey
}

func (v nodeVerifier) Name() string    { return v.name }
func (v nodeVerifier) KeyHash() uint32 { return v.hash }
func (v nodeVerifier) Verify(msg, sig []byte) bool {
	return Verify(v.pub, PurposeCheckpoint, msg, sig) == nil
}

// CertifyCheckpoint is a node's signature line over the checkpoint note
// text: "— trustfed-node/<node id> <base64(key hash ‖ signature)>". The
// caller must first have compared the text with its own audit log and
// state.
func CertifyCheckpoint(ctx context.Context, text []byte, nodeID string, s Signer) (string, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return "", errors.New("certify checkpoint: the note text must end in a newline")
	}
	name := NodeSignerName(nodeID)
	if nodeID == "" || strings.ContainsAny(nodeID, " \t\n+") {
		return "", fmt.Errorf("certify checkpoint: node id %q cannot name a note signature", nodeID)
	}
	sig, err := s.Sign(ctx, PurposeCheckpoint, text)
	if err != nil {
		return "", fmt.Errorf("certify checkpoint as %s: %w", nodeID, err)
	}
	var hb [4]byte
	binary.BigEndian.PutUint32(hb[:], nodeKeyHash(name, s.Public()))
	return "— " + name + " " + base64.StdEncoding.EncodeToString(append(hb[:], sig...)), nil
}

// AssembleNote is a signed note of text with the given signature lines
// (in order, duplicates dropped).
func AssembleNote(text []byte, lines []string) []byte {
	out := append(bytes.Clone(text), '\n')
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			continue
		}
		seen[l] = true
		out = append(out, l...)
		out = append(out, '\n')
	}
	return out
}

// CheckpointQuorum is the number of distinct nodes that must certify a
// checkpoint made at t: floor(n/2)+1 of the n nodes holding an endorsed
// key valid at t (0 when none does). keys are as GET /v1/keys lists them;
// keys without a node id (the legacy registry key) do not count.
func CheckpointQuorum(keys []*trustfedv1.RegistryKey, t time.Time) (quorum int, nodes []string) {
	set := map[string]bool{}
	for _, k := range keys {
		if k.GetNodeId() != "" && CheckRegistryKeyAt(k, t) == nil {
			set[k.NodeId] = true
		}
	}
	for n := range set {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	if len(nodes) == 0 {
		return 0, nil
	}
	return len(nodes)/2 + 1, nodes
}

// VerifyCertifiedCheckpoint verifies a certified checkpoint of the log
// origin against the registry's node keys (GET /v1/keys: every endorsed
// key with its validity and revocation): the text must carry the
// trust-state line; every signature by one of the keys valid at the
// checkpoint's time must verify; and valid signatures by at least a quorum
// (CheckpointQuorum) of distinct nodes must be present. Other signature
// lines (witness cosignatures) are ignored. It returns the checkpoint and
// the nodes that certified it, sorted.
func VerifyCertifiedCheckpoint(signed []byte, origin string, keys []*trustfedv1.RegistryKey) (Checkpoint, []string, error) {
	text, _, err := SplitNote(signed)
	if err != nil {
		return Checkpoint{}, nil, err
	}
	c, err := ParseCheckpoint([]byte(text))
	if err != nil {
		return Checkpoint{}, nil, err
	}
	if c.Origin != origin {
		return Checkpoint{}, nil, fmt.Errorf("checkpoint of log %q, want %q", c.Origin, origin)
	}
	if c.State == nil {
		return Checkpoint{}, nil, fmt.Errorf("%w: no trust-state line (signed by the registry key, not by the registry nodes)", ErrCertification)
	}
	quorum, eligible := CheckpointQuorum(keys, c.State.Time)
	if quorum == 0 {
		return Checkpoint{}, nil, fmt.Errorf("%w: no endorsed node key is valid at the checkpoint's time %s", ErrCertification, fmtTime(c.State.Time))
	}
	var verifiers []note.Verifier
	for _, k := range keys {
		if k.GetNodeId() == "" || CheckRegistryKeyAt(k, c.State.Time) != nil || len(k.PublicKey) != ed25519.PublicKeySize {
			continue
		}
		name := NodeSignerName(k.NodeId)
		verifiers = append(verifiers, nodeVerifier{name: name, hash: nodeKeyHash(name, k.PublicKey), pub: k.PublicKey})
	}
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if err != nil {
		return Checkpoint{}, nil, fmt.Errorf("%w: %v (need %d of the nodes %v)", ErrCertification, err, quorum, eligible)
	}
	var nodes []string
	for _, s := range n.Sigs {
		if id, ok := strings.CutPrefix(s.Name, NodeSignerPrefix); ok && !slices.Contains(nodes, id) {
			nodes = append(nodes, id)
		}
	}
	slices.Sort(nodes)
	if len(nodes) < quorum {
		return Checkpoint{}, nodes, fmt.Errorf("%w: certified by %d node(s) %v, need %d of the %d with a key valid at %s %v",
			ErrCertification, len(nodes), nodes, quorum, len(eligible), fmtTime(c.State.Time), eligible)
	}
	return c, nodes, nil
}

// OpenRegistryCheckpoint verifies a signed checkpoint of the log origin as
// a member, regulator or witness should, given the registry's published
// keys (GET /v1/keys): when they hold endorsed node keys, the checkpoint
// must be certified by a quorum of the nodes (VerifyCertifiedCheckpoint);
// a cluster that never endorsed a node key signs with its registry key (the
// newest key without a node id). Then at least need of the trusted
// witnesses must have cosigned it. It returns the checkpoint, the nodes
// that certified it (none for a registry-key checkpoint) and the witnesses
// whose cosignatures verified.
func OpenRegistryCheckpoint(signed []byte, origin string, keys []*trustfedv1.RegistryKey, witnesses []Witness, need int) (cp Checkpoint, nodes, cosigners []string, err error) {
	if NodeKeysPublished(keys) {
		if cp, nodes, err = VerifyCertifiedCheckpoint(signed, origin, keys); err != nil {
			return Checkpoint{}, nil, nil, err
		}
		cosigners, err = witnessCosigners(signed, witnesses)
		if err != nil {
			return Checkpoint{}, nil, nil, err
		}
	} else {
		var newest *trustfedv1.RegistryKey
		for _, k := range keys {
			if k.GetNodeId() == "" && (newest == nil || !k.GetCreateTime().AsTime().Before(newest.GetCreateTime().AsTime())) {
				newest = k
			}
		}
		if newest == nil || len(newest.PublicKey) != ed25519.PublicKeySize {
			return Checkpoint{}, nil, nil, errors.New("signed checkpoint: the registry published no key")
		}
		vkey, err := CheckpointVerifierKey(origin, newest.PublicKey)
		if err != nil {
			return Checkpoint{}, nil, nil, err
		}
		if cp, cosigners, err = OpenWitnessedCheckpoint(signed, origin, vkey, witnesses, 0); err != nil {
			return Checkpoint{}, nil, nil, err
		}
	}
	if len(cosigners) < need {
		return Checkpoint{}, nodes, cosigners, fmt.Errorf("checkpoint cosigned by %d of the trusted witnesses %v, need %d", len(cosigners), cosigners, need)
	}
	return cp, nodes, cosigners, nil
}

// NodeKeysPublished reports whether keys (GET /v1/keys) hold an endorsed
// node key: the cluster then certifies its checkpoints by a node quorum.
func NodeKeysPublished(keys []*trustfedv1.RegistryKey) bool {
	return slices.ContainsFunc(keys, func(k *trustfedv1.RegistryKey) bool { return k.GetNodeId() != "" })
}

// witnessCosigners are the trusted witnesses with a valid cosignature on
// signed; a cosignature by a listed witness that does not verify is an
// error.
func witnessCosigners(signed []byte, witnesses []Witness) ([]string, error) {
	if len(witnesses) == 0 {
		return nil, nil
	}
	verifiers := make([]note.Verifier, 0, len(witnesses))
	for _, w := range witnesses {
		v, err := witnessVerifier(w.Name, w.Key)
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(signed, note.VerifierList(verifiers...))
	if unverified := (*note.UnverifiedNoteError)(nil); errors.As(err, &unverified) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("witness cosignatures: %w", err)
	}
	var out []string
	for _, s := range n.Sigs {
		out = append(out, s.Name)
	}
	return out, nil
}
