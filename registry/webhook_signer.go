package registry

import (
	"time"

	"github.com/trustfed/trustfed/attestation"
)

// WebhookSigner is the key this node signs revocation webhooks with at now
// (revocation.WebhookSigner): its own endorsed node key valid at now once
// node keys are in force (receivers verify the Trustfed-Key-Id against the
// key history of GET /v1/keys); the registry key before. A node without an
// endorsed key signs nothing (UNAVAILABLE) and the cascade retries, or
// another leader sends.
func (s *Server) WebhookSigner(now time.Time) (attestation.Signer, string, error) {
	r := s.store.Read()
	if !r.NodeKeysInForce() {
		k, err := s.currentKey(r)
		if err != nil {
			return nil, "", err
		}
		return k.signer, k.id, nil
	}
	return s.nodeSigner(r, now)
}
