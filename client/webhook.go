package client

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// NewWebhookSettings returns org's signed request to replace its webhook
// settings (MembershipService.SetWebhook): its notification endpoints and
// the PEM CA certificates its endpoints' server certificates chain to,
// signed now with the organisation's registered key orgKey. The signature
// is ed25519 over "trustfed/org-webhook/v1\x00" + the settings'
// deterministic serialization, which every registry replica verifies.
func NewWebhookSettings(orgKey ed25519.PrivateKey, org string, endpoints []string, caPEM string, now time.Time) (*trustfedv1.SetWebhookRequest, error) {
	if len(orgKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign webhook settings: organisation key of %d bytes", len(orgKey))
	}
	ws := &trustfedv1.WebhookSettings{OrganizationId: org, Endpoints: endpoints, CaCertificatesPem: caPEM, SignTime: timestamppb.New(now)}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ws)
	if err != nil {
		return nil, fmt.Errorf("sign webhook settings: %w", err)
	}
	return &trustfedv1.SetWebhookRequest{Settings: ws, Signature: attestation.Sign(orgKey, attestation.PurposeWebhookSettings, b)}, nil
}
