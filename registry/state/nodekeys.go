package state

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"
	"unicode"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Registry node keys: each server signs with its own key, generated in its
// data directory; only the public key enters the replicated state, through
// an admin change (endorse_node_key) that the admin quorum approved and that
// every replica re-verifies when it applies it. A key is never deleted:
// expired and revoked keys stay as history so that older signatures keep
// verifying (attestation.CheckNodeKeyAt).
const (
	tableNodeKeys = "node_keys"
	// MaxNodeKeyValidity bounds how long one endorsement lasts: keys are
	// rotated by endorsing the next before the current one expires.
	MaxNodeKeyValidity = 2 * 365 * 24 * time.Hour
	maxNodeIDLen       = 128
)

func nodeKeysTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableNodeKeys,
		Indexes: map[string]*memdb.IndexSchema{
			"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "KeyId"}},
			"node": {Name: "node", Indexer: &memdb.StringFieldIndex{Field: "NodeId"}},
		},
	}
}

// ValidateNodeID checks a registry node id (its Raft server id).
func ValidateNodeID(field, id string) error {
	if id == "" || len(id) > maxNodeIDLen {
		return Invalid(field, "must be 1..%d characters", maxNodeIDLen)
	}
	for _, r := range id {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return Invalid(field, "%q holds a space or control character", truncate(id))
		}
	}
	return nil
}

func validateEndorseNodeKey(v Verifier, c *trustfedv1.EndorseNodeKeyChange) error {
	const p = "change.endorse_node_key."
	if err := ValidateNodeID(p+"node_id", c.NodeId); err != nil {
		return err
	}
	if _, ok := v.Fingerprint(c.PublicKey); !ok {
		return Invalid(p+"public_key", "must be a raw 32-byte ed25519 public key")
	}
	for _, ts := range []struct {
		field string
		t     *timestamppb.Timestamp
	}{{p + "valid_from", c.ValidFrom}, {p + "valid_until", c.ValidUntil}} {
		if ts.t == nil {
			return Invalid(ts.field, "is required")
		}
		if err := ts.t.CheckValid(); err != nil {
			return Invalid(ts.field, "%v", err)
		}
	}
	from, until := c.ValidFrom.AsTime(), c.ValidUntil.AsTime()
	if !until.After(from) || until.Sub(from) > MaxNodeKeyValidity {
		return Invalid(p+"valid_until", "%s is not within (valid_from, valid_from+%s]", until.UTC().Format(time.RFC3339), MaxNodeKeyValidity)
	}
	return nil
}

func validateRevokeNodeKey(c *trustfedv1.RevokeNodeKeyChange) error {
	const p = "change.revoke_node_key."
	if err := ValidateNodeID(p+"node_id", c.NodeId); err != nil {
		return err
	}
	if c.KeyId == "" || len(c.KeyId) > 128 {
		return Invalid(p+"key_id", "must be a key id (SHA256:...), 1..128 characters")
	}
	if c.Since == nil {
		return Invalid(p+"since", "is required")
	}
	if err := c.Since.CheckValid(); err != nil {
		return Invalid(p+"since", "%v", err)
	}
	return nil
}

// endorseNodeKey records an endorsed key. Every replica refuses a key that
// has already expired when the change takes effect, and a key that is
// already endorsed (for this node or another: a key names one node).
func endorseNodeKey(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier, changeID string, c *trustfedv1.EndorseNodeKeyChange) error {
	const p = "change.endorse_node_key."
	fp, _ := v.Fingerprint(c.PublicKey)
	now := env.Time.AsTime()
	if !now.Before(c.ValidUntil.AsTime()) {
		return FailedPrecondition(p+"valid_until", "key %s expired at %s, before the change took effect (%s)",
			fp, c.ValidUntil.AsTime().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if cur, ok := (&Reader{txn: tx}).NodeKey(fp); ok {
		return AlreadyExists(p+"public_key", "key %s is already endorsed for node %q (endorse a new key to extend: keys are never re-endorsed)", fp, cur.NodeId)
	}
	return tx.Insert(tableNodeKeys, &trustfedv1.NodeKey{
		KeyId: fp, NodeId: c.NodeId, PublicKey: c.PublicKey, ValidFrom: c.ValidFrom, ValidUntil: c.ValidUntil,
		EndorsedByChange: changeID, CreateIndex: index, ModifyIndex: index, EndorseTime: stamp(env),
	})
}

// revokeNodeKey sets a key's revocation time; a later revocation may only
// move it earlier (a revocation is never lifted or weakened).
func revokeNodeKey(tx *memdb.Txn, index uint64, changeID string, c *trustfedv1.RevokeNodeKeyChange) error {
	const p = "change.revoke_node_key."
	cur, ok := (&Reader{txn: tx}).NodeKey(c.KeyId)
	if !ok || cur.NodeId != c.NodeId {
		return NotFound(p+"key_id", "node %q has no endorsed key %s", c.NodeId, truncate(c.KeyId))
	}
	if cur.RevokeTime != nil && !c.Since.AsTime().Before(cur.RevokeTime.AsTime()) {
		return FailedPrecondition(p+"since", "key %s is already revoked since %s; a revocation can only move earlier",
			cur.KeyId, cur.RevokeTime.AsTime().UTC().Format(time.RFC3339Nano))
	}
	k := proto.CloneOf(cur)
	k.RevokeTime, k.RevokedByChange, k.ModifyIndex = c.Since, changeID, index
	return tx.Insert(tableNodeKeys, k)
}

// NodeKey returns an endorsed key (valid, expired or revoked) by key id.
func (r *Reader) NodeKey(keyID string) (*trustfedv1.NodeKey, bool) {
	return first[*trustfedv1.NodeKey](r.txn, tableNodeKeys, "id", keyID)
}

// NodeKeys lists the key history: every endorsed key, of every node when
// nodeID is "", ordered by node then valid_from then key id.
func (r *Reader) NodeKeys(nodeID string) []*trustfedv1.NodeKey {
	var it memdb.ResultIterator
	var err error
	if nodeID == "" {
		it, err = r.txn.Get(tableNodeKeys, "id")
	} else {
		it, err = r.txn.Get(tableNodeKeys, "node", nodeID)
	}
	if err != nil {
		return nil
	}
	var out []*trustfedv1.NodeKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*trustfedv1.NodeKey))
	}
	sortNodeKeys(out)
	return out
}

// NodeSigningKeys are node's keys usable at now, the most recently valid
// first (so an endorsed successor takes over as soon as it is valid). The
// node signs with the first of them it holds.
func (r *Reader) NodeSigningKeys(nodeID string, now time.Time) []*trustfedv1.NodeKey {
	var out []*trustfedv1.NodeKey
	for _, k := range r.NodeKeys(nodeID) {
		if attestation.CheckNodeKeyAt(k, now) == nil {
			out = append(out, k)
		}
	}
	slices.Reverse(out) // NodeKeys orders by valid_from
	return out
}

// NodeSigningKey returns the key node should sign with at now: the first
// of NodeSigningKeys. The error says why there is none and how to endorse
// one.
func (r *Reader) NodeSigningKey(nodeID string, now time.Time) (*trustfedv1.NodeKey, error) {
	if ks := r.NodeSigningKeys(nodeID, now); len(ks) > 0 {
		return ks[0], nil
	}
	return nil, FailedPrecondition("node_id", "node %q has no endorsed signing key valid at %s: trustfed key endorse %s --from-node ADDR", nodeID, now.UTC().Format(time.RFC3339), nodeID)
}

// VerifyNodeSignature checks that sig is node key keyID's signature of msg
// for purpose p, made at t (the signed statement's own time): the key must
// be endorsed and neither not-yet-valid, expired nor revoked at t.
func (r *Reader) VerifyNodeSignature(keyID string, p attestation.Purpose, msg, sig []byte, t time.Time) (*trustfedv1.NodeKey, error) {
	k, ok := r.NodeKey(keyID)
	if !ok {
		return nil, fmt.Errorf("%w: key %s is not an endorsed node key", attestation.ErrNodeKey, truncate(keyID))
	}
	if err := attestation.CheckNodeKeyAt(k, t); err != nil {
		return nil, err
	}
	if err := attestation.Verify(k.PublicKey, p, msg, sig); err != nil {
		return nil, fmt.Errorf("node %q key %s: %w", k.NodeId, k.KeyId, err)
	}
	return k, nil
}

// NodeKeysForVerify is the node key history in the form verifiers of
// signed statements take it (GET /v1/keys, without the PEM:
// attestation.VerifyCertifiedCheckpoint, attestation.CheckpointQuorum).
func (r *Reader) NodeKeysForVerify() []*trustfedv1.RegistryKey {
	ks := r.NodeKeys("")
	out := make([]*trustfedv1.RegistryKey, 0, len(ks))
	for _, k := range ks {
		out = append(out, &trustfedv1.RegistryKey{KeyId: k.KeyId, NodeId: k.NodeId, PublicKey: k.PublicKey,
			ValidFrom: k.ValidFrom, ValidUntil: k.ValidUntil, RevokeTime: k.RevokeTime, CreateTime: k.EndorseTime})
	}
	return out
}

func sortNodeKeys(ks []*trustfedv1.NodeKey) {
	slices.SortFunc(ks, func(a, b *trustfedv1.NodeKey) int {
		if c := cmp.Compare(a.NodeId, b.NodeId); c != 0 {
			return c
		}
		if c := a.ValidFrom.AsTime().Compare(b.ValidFrom.AsTime()); c != 0 {
			return c
		}
		return cmp.Compare(a.KeyId, b.KeyId)
	})
}

// NodeKeysInForce reports whether the cluster signs with node keys: from
// the first endorsement on, the registry key no longer signs decisions
// (its published validity ends at that endorsement).
// Every check asks: one index lookup, not the sorted history.
func (r *Reader) NodeKeysInForce() bool {
	raw, err := r.txn.First(tableNodeKeys, "id")
	return err == nil && raw != nil
}

// registryKeyRetireTime is when the first node key was endorsed (nil: the
// registry key still signs decisions).
func (r *Reader) registryKeyRetireTime() *timestamppb.Timestamp {
	var first *timestamppb.Timestamp
	for _, k := range r.NodeKeys("") {
		if k.EndorseTime != nil && (first == nil || k.EndorseTime.AsTime().Before(first.AsTime())) {
			first = k.EndorseTime
		}
	}
	return first
}

// PublishedKeys are the keys GET /v1/keys lists, the history verifiers
// check signatures against: the cluster's registry keys (public halves;
// no node id; bounded by the first node key's endorsement once there is
// one), then every endorsed node key with its validity and revocation.
func (r *Reader) PublishedKeys() ([]*trustfedv1.RegistryKey, error) {
	retire := r.registryKeyRetireTime()
	var out []*trustfedv1.RegistryKey
	for _, k := range r.SigningKeys() {
		pub, ok := SigningKeyPublic(k)
		if !ok {
			continue // a pseudonym key only: not a signing key
		}
		rk, err := publishedKey(k.KeyId, pub, k.CreateTime)
		if err != nil {
			return nil, err
		}
		rk.ValidUntil = retire
		out = append(out, rk)
	}
	for _, k := range r.NodeKeys("") {
		rk, err := publishedKey(k.KeyId, k.PublicKey, k.EndorseTime)
		if err != nil {
			return nil, err
		}
		rk.NodeId, rk.ValidFrom, rk.ValidUntil, rk.RevokeTime = k.NodeId, k.ValidFrom, k.ValidUntil, k.RevokeTime
		out = append(out, rk)
	}
	return out, nil
}

func publishedKey(id string, pub ed25519.PublicKey, created *timestamppb.Timestamp) (*trustfedv1.RegistryKey, error) {
	pemBytes, err := attestation.MarshalPublicKeyPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("publish key %s: %w", id, err)
	}
	return &trustfedv1.RegistryKey{KeyId: id, PublicKey: pub, PublicKeyPem: string(pemBytes), Algorithm: "Ed25519", CreateTime: created}, nil
}
