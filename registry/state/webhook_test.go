package state

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// webhookSettings is org's webhook settings signed by signer at h.now.
func (h *harness) webhookSettings(org, signer string, mutate func(*trustfedv1.WebhookSettings)) *commandv1.SetWebhook {
	ws := &trustfedv1.WebhookSettings{OrganizationId: org, Endpoints: []string{"https://hooks." + org + ".example/trustfed"}, SignTime: timestamppb.New(h.now)}
	if mutate != nil {
		mutate(ws)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ws)
	require.NoError(h.t, err)
	return &commandv1.SetWebhook{Settings: b, Signature: attestation.Sign(h.fed.Key(signer), attestation.PurposeWebhookSettings, b)}
}

// An organisation's signed webhook settings replace its endpoints and CA
// certificates; every replica checks the signature with the organisation's
// registered key and the certificates before applying them.
func TestSetWebhook(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.member("globex", 3, 3)
	ca, err := attestation.NewCA("acme-bank webhooks", h.now, 24*time.Hour)
	require.NoError(t, err)
	node, key, err := ca.IssueNode("hooks", []string{"127.0.0.1"}, h.now, time.Hour)
	require.NoError(t, err)
	caKey, err := ca.KeyPEM()
	require.NoError(t, err)

	h.must(h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.CaCertificatesPem = string(ca.CertPEM) }))
	o, ok := h.read().Organization("acme-bank")
	require.True(t, ok)
	require.Equal(t, []string{"https://hooks.acme-bank.example/trustfed"}, o.NotificationEndpoints)
	require.Equal(t, string(ca.CertPEM), o.WebhookCaCertificatesPem)
	require.Equal(t, h.index, o.ModifyIndex)

	before := o.ModifyIndex
	for _, tc := range []struct {
		name  string
		cmd   *commandv1.SetWebhook
		kind  error
		field string
	}{
		{"signed by another organisation", h.webhookSettings("acme-bank", "globex", nil), ErrInvalidArgument, "signature"},
		{"a private key", h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.CaCertificatesPem = string(caKey) }), ErrInvalidArgument, "settings.ca_certificates_pem[0]"},
		{"a node key after the CA", h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.CaCertificatesPem = string(ca.CertPEM) + string(key) }), ErrInvalidArgument, "settings.ca_certificates_pem[1]"},
		{"not a CA", h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.CaCertificatesPem = string(node) }), ErrInvalidArgument, "settings.ca_certificates_pem[0]"},
		{"not PEM", h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.CaCertificatesPem = "trust me" }), ErrInvalidArgument, "settings.ca_certificates_pem"},
		{"plain http", h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.Endpoints = []string{"http://hooks.example"} }), ErrInvalidArgument, "settings.endpoints[0]"},
		{"stale", h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.SignTime = timestamppb.New(h.now.Add(-time.Hour)) }), ErrInvalidArgument, "settings.sign_time"},
		{"unknown organisation", h.webhookSettings("initech", "acme-bank", nil), ErrNotFound, "settings.organization_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireKind(t, h.apply(tc.cmd, "").Err, tc.kind, tc.field)
			o, _ := h.read().Organization("acme-bank")
			require.Equal(t, before, o.ModifyIndex, "nothing written")
		})
	}
	tampered := h.webhookSettings("acme-bank", "acme-bank", nil)
	tampered.Settings = append(tampered.Settings, 0x78, 0x01) // an unknown field: other bytes, same settings
	requireKind(t, h.apply(tampered, "").Err, ErrInvalidArgument, "signature")

	// Empty settings: notifications over the event stream only.
	h.must(h.webhookSettings("acme-bank", "acme-bank", func(ws *trustfedv1.WebhookSettings) { ws.Endpoints = nil }))
	o, _ = h.read().Organization("acme-bank")
	require.Empty(t, o.NotificationEndpoints)
	require.Empty(t, o.WebhookCaCertificatesPem)
}
