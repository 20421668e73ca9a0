package attestation

import (
	"errors"
	"fmt"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrNodeKey is returned when a registry key may not be relied on for a
// signature made at a given time.
var ErrNodeKey = errors.New("signing key not valid")

// CheckNodeKeyAt reports whether a signature by the endorsed node key k made
// at t counts: t must lie in [valid_from, valid_until) and before the key's
// revocation time, if any. Verifiers call it with the signed statement's
// time (a decision's decided_at); replicas call it with the apply time.
func CheckNodeKeyAt(k *trustfedv1.NodeKey, t time.Time) error {
	if k == nil {
		return fmt.Errorf("%w: unknown key", ErrNodeKey)
	}
	if k.ValidFrom == nil || k.ValidUntil == nil {
		return fmt.Errorf("%w: key %s of node %q has no validity period", ErrNodeKey, k.KeyId, k.NodeId)
	}
	return checkWindow(k.KeyId, k.NodeId, k.ValidFrom, k.ValidUntil, k.RevokeTime, t)
}

// CheckRegistryKeyAt is CheckNodeKeyAt for a key as GET /v1/keys publishes
// it. A node key must carry its validity period; the legacy cluster-wide
// key (no node id) is bounded only by what it carries (its valid_until is
// when the cluster switched to node keys).
func CheckRegistryKeyAt(k *trustfedv1.RegistryKey, t time.Time) error {
	if k == nil {
		return fmt.Errorf("%w: unknown key", ErrNodeKey)
	}
	if k.NodeId != "" && (k.ValidFrom == nil || k.ValidUntil == nil) {
		return fmt.Errorf("%w: key %s of node %q has no validity period", ErrNodeKey, k.KeyId, k.NodeId)
	}
	return checkWindow(k.KeyId, k.NodeId, k.ValidFrom, k.ValidUntil, k.RevokeTime, t)
}

func checkWindow(keyID, nodeID string, from, until, revoked *timestamppb.Timestamp, t time.Time) error {
	switch {
	case from != nil && t.Before(from.AsTime()):
		return fmt.Errorf("%w: key %s of node %q is not valid before %s (signature time %s)",
			ErrNodeKey, keyID, nodeID, fmtTime(from.AsTime()), fmtTime(t))
	case until != nil && !t.Before(until.AsTime()):
		return fmt.Errorf("%w: key %s of node %q expired at %s (signature time %s)",
			ErrNodeKey, keyID, nodeID, fmtTime(until.AsTime()), fmtTime(t))
	case revoked != nil && !t.Before(revoked.AsTime()):
		return fmt.Errorf("%w: key %s of node %q is revoked since %s (signature time %s)",
			ErrNodeKey, keyID, nodeID, fmtTime(revoked.AsTime()), fmtTime(t))
	}
	return nil
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
