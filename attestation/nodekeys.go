package attestation

import (
	"errors"
	"fmt"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// ErrNodeKey is returned when a registry node key may not be relied on for
// a signature made at a given time.
var ErrNodeKey = errors.New("node key not valid")

// CheckNodeKeyAt reports whether a signature by the endorsed node key k made
// at t counts: t must lie in [valid_from, valid_until) and before the key's
// revocation time, if any. Verifiers call it with the signed statement's
// time (a decision's decided_at); replicas call it with the apply time.
func CheckNodeKeyAt(k *trustfedv1.NodeKey, t time.Time) error {
	switch {
	case k == nil:
		return fmt.Errorf("%w: unknown key", ErrNodeKey)
	case k.ValidFrom == nil || t.Before(k.ValidFrom.AsTime()):
		return fmt.Errorf("%w: key %s of node %q is not valid before %s (signature time %s)",
			ErrNodeKey, k.KeyId, k.NodeId, fmtTime(k.ValidFrom.AsTime()), fmtTime(t))
	case k.ValidUntil == nil || !t.Before(k.ValidUntil.AsTime()):
		return fmt.Errorf("%w: key %s of node %q expired at %s (signature time %s)",
			ErrNodeKey, k.KeyId, k.NodeId, fmtTime(k.ValidUntil.AsTime()), fmtTime(t))
	case k.RevokeTime != nil && !t.Before(k.RevokeTime.AsTime()):
		return fmt.Errorf("%w: key %s of node %q is revoked since %s (signature time %s)",
			ErrNodeKey, k.KeyId, k.NodeId, fmtTime(k.RevokeTime.AsTime()), fmtTime(t))
	}
	return nil
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
