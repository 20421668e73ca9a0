package client

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// ErrAuditProof: an audit proof or tree head does not verify.
var ErrAuditProof = errors.New("audit proof does not verify")

// VerifyTreeHead checks a signed tree head of a cluster that signs its
// checkpoints with its registry key (no node key endorsed; see
// VerifyTreeHeadWithKeys for a cluster whose nodes certify them): the
// checkpoint note must carry a valid signature by the registry key
// vkey (a note verifier key "<origin>+<hash>+<key>", obtained out of band or
// pinned; the one in sth itself proves nothing), at least need valid
// cosignatures by the trusted witnesses, and agree with the fields of sth.
func VerifyTreeHead(sth *trustfedv1.GetSignedTreeHeadResponse, vkey string, witnesses []attestation.Witness, need int) (attestation.Checkpoint, error) {
	if sth == nil {
		return attestation.Checkpoint{}, fmt.Errorf("%w: no tree head", ErrAuditProof)
	}
	origin, _, _ := cutName(vkey)
	cp, _, err := attestation.OpenWitnessedCheckpoint(sth.Checkpoint, origin, vkey, witnesses, need)
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("%w: %v", ErrAuditProof, err)
	}
	if cp.Size != sth.TreeSize || !bytes.Equal(cp.Root, sth.RootHash) || cp.Origin != sth.Origin {
		return attestation.Checkpoint{}, fmt.Errorf("%w: the tree head's fields disagree with its signed checkpoint", ErrAuditProof)
	}
	return cp, nil
}

// VerifyTreeHeadWithKeys checks a signed tree head against the registry's
// published keys (GET /v1/keys, Client.Keys): once the cluster endorsed
// node keys, the checkpoint must be certified by a quorum of the registry
// nodes, each with its own endorsed key valid at the checkpoint's time
// (attestation.VerifyCertifiedCheckpoint); a cluster without node keys
// signs with its registry key. Then at least need of the trusted witnesses
// must have cosigned it, and the fields of sth must agree with it.
func VerifyTreeHeadWithKeys(sth *trustfedv1.GetSignedTreeHeadResponse, keys attestation.DecisionKeys, witnesses []attestation.Witness, need int) (attestation.Checkpoint, error) {
	if sth == nil {
		return attestation.Checkpoint{}, fmt.Errorf("%w: no tree head", ErrAuditProof)
	}
	cp, _, _, err := attestation.OpenRegistryCheckpoint(sth.Checkpoint, sth.Origin, keyList(keys), witnesses, need)
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("%w: %v", ErrAuditProof, err)
	}
	if cp.Size != sth.TreeSize || !bytes.Equal(cp.Root, sth.RootHash) {
		return attestation.Checkpoint{}, fmt.Errorf("%w: the tree head's fields disagree with its signed checkpoint", ErrAuditProof)
	}
	return cp, nil
}

// keyList is the published keys as a list, ordered by key id.
func keyList(keys attestation.DecisionKeys) []*trustfedv1.RegistryKey {
	out := make([]*trustfedv1.RegistryKey, 0, len(keys))
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		out = append(out, keys[id])
	}
	return out
}

func cutName(vkey string) (name, rest string, ok bool) {
	for i := 0; i < len(vkey); i++ {
		if vkey[i] == '+' {
			return vkey[:i], vkey[i+1:], true
		}
	}
	return vkey, "", false
}

// VerifyInclusion checks that leaf is entry seq of the tree cp names.
func VerifyInclusion(leaf []byte, seq uint64, hashes [][]byte, cp attestation.Checkpoint) error {
	h := rfc6962.DefaultHasher
	if err := proof.VerifyInclusion(h, seq, cp.Size, h.HashLeaf(leaf), hashes, cp.Root); err != nil {
		return fmt.Errorf("%w: entry %d in the tree of %d: %v", ErrAuditProof, seq, cp.Size, err)
	}
	return nil
}

// VerifyConsistency checks that the tree old names is a prefix of the tree
// cur names (the log was only appended to between them).
func VerifyConsistency(old, cur attestation.Checkpoint, hashes [][]byte) error {
	if old.Origin != cur.Origin {
		return fmt.Errorf("%w: checkpoints of two logs (%q, %q)", ErrAuditProof, old.Origin, cur.Origin)
	}
	if old.Size > cur.Size {
		return fmt.Errorf("%w: the log shrank from %d to %d entries", ErrAuditProof, old.Size, cur.Size)
	}
	if old.Size == 0 {
		return nil
	}
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old.Size, cur.Size, hashes, old.Root, cur.Root); err != nil {
		return fmt.Errorf("%w: from %d to %d entries: %v", ErrAuditProof, old.Size, cur.Size, err)
	}
	return nil
}
