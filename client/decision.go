package client

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Keys fetches the registry's decision-signing public keys, by key id.
// Fetch them once and keep them: verifying a decision needs no network.
func (c *Client) Keys(ctx context.Context) (attestation.DecisionKeys, error) {
	resp, err := c.registry.GetKeys(ctx, &trustfedv1.GetKeysRequest{})
	if err != nil {
		return nil, fmt.Errorf("get registry keys: %w", err)
	}
	return DecisionKeys(resp)
}

// DecisionKeys are the keys of a GetKeys answer (GET /v1/keys), by key id,
// with each key's node and validity (the key history), as VerifyDecision
// takes them: keep the answer to verify decisions offline.
func DecisionKeys(resp *trustfedv1.GetKeysResponse) (attestation.DecisionKeys, error) {
	keys := attestation.DecisionKeys{}
	for _, k := range resp.GetKeys() {
		if len(k.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("registry key %q is not an ed25519 key", k.KeyId)
		}
		keys[k.KeyId] = k
	}
	return keys, nil
}

// VerifyDecision checks a decision offline: that a quorum of registry
// nodes, each with its own endorsed key, vouches for its statement (the
// quorum certificate), that the answer matches the statement, and that it
// is still fresh at now. Never act on a decision it refuses (AG-783 TC4,
// Scenario C). A decision signed by one node alone is refused: see
// VerifyDecisionWith to accept it.
func VerifyDecision(resp *trustfedv1.CheckInteractionResponse, keys attestation.DecisionKeys, now time.Time) (*trustfedv1.DecisionStatement, error) {
	return attestation.VerifyDecision(resp, keys, now)
}

// VerifyDecisionWith is VerifyDecision with options: accept single-node
// decisions (a registry run with -unaudited-decisions), or require more
// signatures than a majority of the published node keys.
func VerifyDecisionWith(resp *trustfedv1.CheckInteractionResponse, keys attestation.DecisionKeys, now time.Time, opts attestation.VerifyOptions) (*trustfedv1.DecisionStatement, error) {
	return attestation.VerifyDecisionWith(resp, keys, now, opts)
}
