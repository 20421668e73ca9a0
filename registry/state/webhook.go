package state

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// An organisation changes where, and over which TLS trust, it receives
// revocation notifications by signing its webhook settings ("my webhook
// endpoints are these, trust these CA certificates for them") with its
// registered key. The leader checks the settings before proposing; every
// replica checks them again, signature included, when applying.

// PurposeWebhookSettings is attestation.PurposeWebhookSettings.
const PurposeWebhookSettings = "org-webhook"

// Limits of webhook settings.
const (
	// MaxWebhookCACertificates bounds the CA certificates of one organisation.
	MaxWebhookCACertificates = 8
	// MaxWebhookCABytes bounds their PEM text.
	MaxWebhookCABytes = 32 << 10
)

// ValidateWebhookCAs checks the PEM text of an organisation's webhook CA
// certificates: only CERTIFICATE blocks (never a private key), each a
// parsable X.509 CA certificate, nothing else in the text.
func ValidateWebhookCAs(field, text string) error {
	if len(text) > MaxWebhookCABytes {
		return Invalid(field, "is %d bytes, more than %d", len(text), MaxWebhookCABytes)
	}
	rest := []byte(text)
	for i := 0; ; i++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			if len(bytes.TrimSpace(rest)) > 0 {
				return Invalid(field, "holds text that is not a PEM block after certificate %d", i)
			}
			return nil
		}
		f := fmt.Sprintf("%s[%d]", field, i)
		if i >= MaxWebhookCACertificates {
			return Invalid(field, "holds more than %d certificates", MaxWebhookCACertificates)
		}
		if b.Type != "CERTIFICATE" {
			return Invalid(f, "is a PEM %q block: only CERTIFICATE blocks (never a private key)", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return Invalid(f, "does not parse as an X.509 certificate: %v", err)
		}
		if !c.IsCA {
			return Invalid(f, "%q is not a CA certificate (basic constraints CA:TRUE)", c.Subject.String())
		}
	}
}

// CheckWebhookSettings verifies signed webhook settings (the serialized
// trustfed.v1.WebhookSettings and its organisation's signature) against
// the state r at time now, and returns the organisation as it would be
// with them (not yet stamped).
func CheckWebhookSettings(r *Reader, v Verifier, settings, sig []byte, now time.Time) (*trustfedv1.Organization, error) {
	if len(settings) == 0 {
		return nil, Invalid("settings", "is required")
	}
	var ws trustfedv1.WebhookSettings
	if err := proto.Unmarshal(settings, &ws); err != nil {
		return nil, Invalid("settings", "is not a serialized trustfed.v1.WebhookSettings: %v", err)
	}
	if err := ValidateOrganizationID("settings.organization_id", ws.OrganizationId); err != nil {
		return nil, err
	}
	if err := ValidateEndpoints("settings.endpoints", ws.Endpoints); err != nil {
		return nil, err
	}
	if err := ValidateWebhookCAs("settings.ca_certificates_pem", ws.CaCertificatesPem); err != nil {
		return nil, err
	}
	if ws.SignTime == nil {
		return nil, Invalid("settings.sign_time", "is required")
	}
	if err := ws.SignTime.CheckValid(); err != nil {
		return nil, Invalid("settings.sign_time", "%v", err)
	}
	if skew := ws.SignTime.AsTime().Sub(now); skew > MaxEnrolmentSkew || skew < -MaxEnrolmentSkew {
		return nil, Invalid("settings.sign_time", "%s is more than %v from the registry's time %s",
			ws.SignTime.AsTime().UTC().Format(time.RFC3339), MaxEnrolmentSkew, now.UTC().Format(time.RFC3339))
	}
	if len(sig) == 0 {
		return nil, Invalid("signature", "is required")
	}
	cur, ok := r.Organization(ws.OrganizationId)
	if !ok {
		return nil, NotFound("settings.organization_id", "organization %q does not exist", ws.OrganizationId)
	}
	if cur.Status == trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED {
		return nil, FailedPrecondition("settings.organization_id", "organization %q is revoked", ws.OrganizationId)
	}
	if err := v.VerifySignature(cur.PublicKey, PurposeWebhookSettings, settings, sig); err != nil {
		return nil, Invalid("signature", "does not verify with the key registered for %q over the settings: %v", ws.OrganizationId, err)
	}
	org := proto.CloneOf(cur)
	org.NotificationEndpoints = ws.Endpoints
	org.WebhookCaCertificatesPem = ws.CaCertificatesPem
	return org, nil
}

func applySetWebhook(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.SetWebhook
	if err := decode(env, &c); err != nil {
		return err
	}
	org, err := CheckWebhookSettings(&Reader{txn: tx}, v, c.Settings, c.Signature, env.Time.AsTime())
	if err != nil {
		return err
	}
	org.UpdateTime, org.ModifyIndex = stamp(env), index
	return tx.Insert(tableOrganizations, org)
}
