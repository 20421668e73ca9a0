package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Witness runs one witnessing round for the member organisation orgID
// (C2SP tlog-cosignature, witness name = orgID, key = the organisation's
// registered ed25519 key):
//
//  1. fetch the newest signed tree head and verify it: once the cluster
//     endorsed node keys, it must be certified by a quorum of the registry
//     nodes (keys from GetKeys, VerifyTreeHeadWithKeys); before, it must
//     carry the registry key's signature, vkey (the registry's note
//     verifier key, see RegistryVerifierKey);
//  2. if last (the checkpoint this witness cosigned before) is not nil,
//     fetch a consistency proof from last to the new tree and verify it: a
//     registry showing a different history (a fork, a rewritten or shrunk
//     log) fails with an error wrapping ErrAuditProof, and nothing is
//     cosigned or sent;
//  3. cosign the checkpoint and submit it with AddCosignature (skipped when
//     the checkpoint already carries this witness's valid cosignature).
//
// It returns the checkpoint it vouched for: keep it (durably) and pass it
// as last to the next round. Never pass a checkpoint the witness did not
// verify, and never go back to an older one: that is what makes a fork
// detectable.
func (c *Client) Witness(ctx context.Context, orgID string, key ed25519.PrivateKey, vkey string, last *attestation.Checkpoint) (attestation.Checkpoint, error) {
	if orgID == "" {
		return attestation.Checkpoint{}, errors.New("witness: organization id is empty")
	}
	if len(key) != ed25519.PrivateKeySize {
		return attestation.Checkpoint{}, fmt.Errorf("witness %s: not an ed25519 private key", orgID)
	}
	sth, err := c.audit.GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{Consistency: trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE})
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("witness %s: get signed tree head: %w", orgID, err)
	}
	cp, err := c.verifyHead(ctx, sth, vkey)
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("witness %s: %w", orgID, err)
	}
	if cp.Origin == orgID {
		return attestation.Checkpoint{}, fmt.Errorf("witness %s: the witness is named like the log it witnesses", orgID)
	}
	if last != nil {
		if err := c.checkConsistent(ctx, *last, cp); err != nil {
			return attestation.Checkpoint{}, fmt.Errorf("witness %s: not cosigning the tree of %d entries: %w", orgID, cp.Size, err)
		}
	}
	note, mine := withoutCosignatures(sth.Checkpoint, orgID)
	pub := key.Public().(ed25519.PublicKey)
	for _, line := range mine {
		if _, err := attestation.VerifyCosignature(note, line, orgID, pub); err == nil {
			return cp, nil // cosigned in an earlier round: nothing to add
		}
	}
	cosigned, _, err := attestation.Cosign(note, orgID, key)
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("witness %s: %w", orgID, err)
	}
	req := &trustfedv1.AddCosignatureRequest{OrganizationId: orgID, Checkpoint: cosigned}
	// Adding the same cosignature twice replaces it: a retry is harmless.
	err = RetryUnknown(ctx, func(ctx context.Context) error {
		_, err := c.audit.AddCosignature(ctx, req)
		return err
	})
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("witness %s: add cosignature of the tree of %d entries: %w", orgID, cp.Size, err)
	}
	return cp, nil
}

// verifyHead verifies a tree head: certified by a node quorum when the
// registry publishes node keys, else signed by the registry key vkey.
func (c *Client) verifyHead(ctx context.Context, sth *trustfedv1.GetSignedTreeHeadResponse, vkey string) (attestation.Checkpoint, error) {
	keys, err := c.Keys(ctx)
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("get registry keys: %w", err)
	}
	if attestation.NodeKeysPublished(keyList(keys)) {
		return VerifyTreeHeadWithKeys(sth, keys, nil, 0)
	}
	return VerifyTreeHead(sth, vkey, nil, 0)
}

// checkConsistent verifies that cur extends old, fetching a consistency
// proof when one is needed (a tree of the same size must have the same
// root; a smaller one is a shrunk log and refused without asking).
func (c *Client) checkConsistent(ctx context.Context, old, cur attestation.Checkpoint) error {
	var hashes [][]byte
	if old.Origin == cur.Origin && old.Size > 0 && old.Size < cur.Size {
		resp, err := c.audit.GetConsistencyProof(ctx, &trustfedv1.GetConsistencyProofRequest{
			First: old.Size, Second: cur.Size, Consistency: trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE,
		})
		if err != nil {
			return fmt.Errorf("get consistency proof from %d to %d entries: %w", old.Size, cur.Size, err)
		}
		if resp.First != old.Size || resp.Second != cur.Size {
			return fmt.Errorf("%w: asked for a consistency proof from %d to %d entries, got one from %d to %d",
				ErrAuditProof, old.Size, cur.Size, resp.First, resp.Second)
		}
		hashes = resp.Hashes
	}
	return VerifyConsistency(old, cur, hashes)
}

// withoutCosignatures returns the signed note without the signature lines
// named name, and those lines.
func withoutCosignatures(signed []byte, name string) ([]byte, []string) {
	text, sigs, err := attestation.SplitNote(signed)
	if err != nil {
		return signed, nil
	}
	out := []byte(text + "\n")
	var mine []string
	for _, line := range sigs {
		if attestation.SignedBy(line, name) {
			mine = append(mine, line)
			continue
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return out, mine
}

// RegistryVerifierKey returns the note verifier key of the registry's
// newest signing key (from GetKeys) for the audit log named origin, for
// VerifyTreeHead and Witness.
//
// It trusts the node it asks: a registry that lies about its key can then
// show forged tree heads. Pinning the verifier key out of band (taken once
// from a trusted source, e.g. the federation's published configuration)
// is stronger; use this for a first contact or where nothing better exists.
func (c *Client) RegistryVerifierKey(ctx context.Context, origin string) (string, error) {
	if origin == "" {
		return "", errors.New("registry verifier key: origin is empty")
	}
	resp, err := c.registry.GetKeys(ctx, &trustfedv1.GetKeysRequest{})
	if err != nil {
		return "", fmt.Errorf("get registry keys: %w", err)
	}
	var newest *trustfedv1.RegistryKey
	for _, k := range resp.Keys {
		if k.NodeId != "" {
			continue // a node's own key signs decisions, not checkpoints
		}
		// The newest by creation time; the later in the list on a tie (the
		// registry lists its keys oldest first).
		if newest == nil || !k.GetCreateTime().AsTime().Before(newest.GetCreateTime().AsTime()) {
			newest = k
		}
	}
	if newest == nil {
		return "", errors.New("registry verifier key: the registry published no key")
	}
	if len(newest.PublicKey) != ed25519.PublicKeySize {
		return "", fmt.Errorf("registry key %q is not an ed25519 key", newest.KeyId)
	}
	return attestation.CheckpointVerifierKey(origin, ed25519.PublicKey(newest.PublicKey))
}
