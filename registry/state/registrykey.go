package state

import (
	"crypto/ed25519"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The cluster-wide registry key of clusters created before node keys: its
// seed lived in the replicated state (PUT_SIGNING_KEY). Once node keys are
// in force, RETIRE_REGISTRY_SEED removes the seed (the public key stays in
// the key history; the pseudonym key derived from it stays); the next
// snapshot and log compaction drop it from disk. A fresh cluster never
// stores one: its first leader endorses its own node key
// (BOOTSTRAP_NODE_KEY), with the same authority as the bootstrap token.

// pseudonymKeyID names the row that holds only the pseudonym key of a
// cluster bootstrapped with a node key.
const pseudonymKeyID = "audit-pseudonym-key"

// SigningKeyPublic is a registry key's public key: kept in public_key once
// the seed is retired, derived from the seed before. ok is false for a row
// that holds no key (only a pseudonym key).
func SigningKeyPublic(k *commandv1.SigningKey) (ed25519.PublicKey, bool) {
	switch {
	case len(k.GetPublicKey()) == ed25519.PublicKeySize:
		return ed25519.PublicKey(k.PublicKey), true
	case len(k.GetPrivateSeed()) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(k.PrivateSeed).Public().(ed25519.PublicKey), true
	}
	return nil, false
}

// RegistrySeedHeld reports whether the state still holds a registry key's
// private seed (a cluster created before node keys that has not retired it).
func (r *Reader) RegistrySeedHeld() bool {
	_, ok := r.NewestSigningKey()
	return ok
}

// applyRetireRegistrySeed removes every registry key's seed, keeping its
// public key and the pseudonym key derived from it. Refused before node
// keys are in force (the seed still signs) and when no seed is left.
func applyRetireRegistrySeed(tx *memdb.Txn, env *commandv1.Envelope, index uint64, _ Verifier) error {
	var c commandv1.RetireRegistrySeed
	if err := decode(env, &c); err != nil {
		return err
	}
	r := &Reader{txn: tx}
	if !r.NodeKeysInForce() {
		return FailedPrecondition("node_keys", "no node key is endorsed yet: the registry key still signs")
	}
	if !r.RegistrySeedHeld() {
		return FailedPrecondition("key", "the state holds no registry seed")
	}
	for _, k := range r.SigningKeys() {
		if len(k.PrivateSeed) == 0 {
			continue
		}
		pub, _ := SigningKeyPublic(k)
		nk := proto.CloneOf(k)
		nk.PublicKey, nk.PseudonymKey, nk.PrivateSeed = pub, pseudonymKeyOf(k.PrivateSeed), nil
		if err := tx.Insert(tableSigningKeys, nk); err != nil {
			return err
		}
	}
	return nil
}

// ValidateBootstrapNodeKey checks a bootstrap endorsement.
func ValidateBootstrapNodeKey(v Verifier, c *commandv1.BootstrapNodeKey) error {
	if err := ValidateNodeID("node_id", c.NodeId); err != nil {
		return err
	}
	if _, ok := v.Fingerprint(c.PublicKey); !ok {
		return Invalid("public_key", "must be a raw 32-byte ed25519 public key")
	}
	if len(c.PseudonymKey) != 32 {
		return Invalid("pseudonym_key", "must be 32 random bytes")
	}
	for _, ts := range []struct {
		field string
		t     *timestamppb.Timestamp
	}{{"valid_from", c.ValidFrom}, {"valid_until", c.ValidUntil}} {
		if ts.t == nil {
			return Invalid(ts.field, "is required")
		}
		if err := ts.t.CheckValid(); err != nil {
			return Invalid(ts.field, "%v", err)
		}
	}
	from, until := c.ValidFrom.AsTime(), c.ValidUntil.AsTime()
	if !until.After(from) || until.Sub(from) > MaxNodeKeyValidity {
		return Invalid("valid_until", "%s is not within (valid_from, valid_from+%s]", until.UTC().Format(time.RFC3339), MaxNodeKeyValidity)
	}
	return nil
}

// applyBootstrapNodeKey endorses a fresh cluster's first node key and
// stores its pseudonym key; refused once the state holds any node key or
// registry key (it is not a way to add keys: endorsements need the admin
// quorum).
func applyBootstrapNodeKey(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.BootstrapNodeKey
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateBootstrapNodeKey(v, &c); err != nil {
		return err
	}
	r := &Reader{txn: tx}
	if r.NodeKeysInForce() || len(r.SigningKeys()) > 0 {
		return FailedPrecondition("public_key", "the registry already has node keys or a registry key: endorse keys with the admin quorum")
	}
	if !env.GetTime().AsTime().Before(c.ValidUntil.AsTime()) {
		return FailedPrecondition("valid_until", "the key expired before the command took effect")
	}
	fp, _ := v.Fingerprint(c.PublicKey)
	if err := tx.Insert(tableNodeKeys, &trustfedv1.NodeKey{
		KeyId: fp, NodeId: c.NodeId, PublicKey: c.PublicKey, ValidFrom: c.ValidFrom, ValidUntil: c.ValidUntil,
		EndorsedByChange: "bootstrap", CreateIndex: index, ModifyIndex: index, EndorseTime: stamp(env),
	}); err != nil {
		return err
	}
	return tx.Insert(tableSigningKeys, &commandv1.SigningKey{KeyId: pseudonymKeyID, PseudonymKey: c.PseudonymKey, CreateTime: stamp(env), CreateIndex: index})
}

// redactBootstrapNodeKey keeps the pseudonym key out of the audit log.
func redactBootstrapNodeKey(m proto.Message) bool {
	c, ok := m.(*commandv1.BootstrapNodeKey)
	if !ok {
		return false
	}
	c.PseudonymKey = nil
	return true
}
