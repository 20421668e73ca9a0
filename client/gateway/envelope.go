package gateway

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// PurposeEnvelope separates envelope signatures from every other ed25519
// signature of trustfed: the signed bytes are
// "trustfed/gateway-envelope/v1\x00" + EnvelopeBody bytes.
const PurposeEnvelope attestation.Purpose = "gateway-envelope"

// EnvelopeVersion is the version of the envelope format this package
// writes and reads.
const EnvelopeVersion = 1

// NonceSize is the length of an envelope nonce.
const NonceSize = 16

// Limits of what an inbound envelope may hold.
const (
	// MaxEnvelopeSize bounds an envelope as received (body, signature,
	// framing).
	MaxEnvelopeSize = 4 << 20
	maxIDLen        = 128
)

// Seal serializes body and signs it with key (the sending node's enrolled
// key). The body bytes are deterministic protobuf, but receivers verify
// the bytes as received: any valid encoding of the body seals correctly.
func Seal(key ed25519.PrivateKey, body *gatewayv1.EnvelopeBody) (*gatewayv1.Envelope, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("seal envelope: node key of %d bytes", len(key))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("seal envelope: %w", err)
	}
	return &gatewayv1.Envelope{Body: b, Signature: attestation.Sign(key, PurposeEnvelope, b)}, nil
}

// Opened is an envelope whose signature verified with its sender node's
// certified key.
type Opened struct {
	Body   *gatewayv1.EnvelopeBody
	Sender *x509.Certificate
}

// OpenEnvelope checks an envelope's sender and signature, nothing else:
// that body parses and is of this version, that sender_certificate is a
// member certificate issued by the federation CA (roots), valid at now,
// naming the body's sender organisation and node, and that the signature
// over the body bytes verifies with the certificate's key. The decision
// and the rest are the Gateway's to check (Receive).
func OpenEnvelope(env *gatewayv1.Envelope, roots *x509.CertPool, now time.Time) (*Opened, error) {
	return openEnvelope(env, roots, now, nil)
}

// openEnvelope is OpenEnvelope remembering verified sender certificates
// in certs (nil: none).
func openEnvelope(env *gatewayv1.Envelope, roots *x509.CertPool, now time.Time, certs *certCache) (*Opened, error) {
	if env == nil || len(env.Body) == 0 {
		return nil, refuse(CodeMalformed, "envelope: body is empty")
	}
	var body gatewayv1.EnvelopeBody
	if err := proto.Unmarshal(env.Body, &body); err != nil {
		return nil, refuseErr(CodeMalformed, err, "envelope: body does not parse")
	}
	if body.Version != EnvelopeVersion {
		return nil, refuse(CodeMalformed, "envelope: version is %d, want %d", body.Version, EnvelopeVersion)
	}
	if err := checkFields(&body); err != nil {
		return nil, err
	}
	sender, err := certs.check(body.SenderCertificate, roots, now)
	if err != nil {
		return nil, err
	}
	if sender.org != body.SenderOrganizationId || sender.node != body.SenderNodeId {
		return nil, refuse(CodeBadSender, "envelope: sender_certificate is for %s/%s, the body names %s/%s", sender.org, sender.node, body.SenderOrganizationId, body.SenderNodeId)
	}
	pub := sender.pub
	if err := attestation.Verify(pub, PurposeEnvelope, env.Body, env.Signature); err != nil {
		return nil, refuseErr(CodeBadSignature, err, "envelope: signature")
	}
	return &Opened{Body: &body, Sender: sender.leaf}, nil
}

// checkFields refuses a body with a missing or oversized field.
func checkFields(b *gatewayv1.EnvelopeBody) error {
	for _, f := range []struct{ name, v string }{
		{"sender_organization_id", b.SenderOrganizationId}, {"sender_node_id", b.SenderNodeId},
		{"recipient_organization_id", b.RecipientOrganizationId}, {"action", b.Action},
	} {
		if f.v == "" || len(f.v) > maxIDLen {
			return refuse(CodeMalformed, "envelope: %s must be 1..%d bytes", f.name, maxIDLen)
		}
	}
	switch {
	case len(b.SessionId) > maxIDLen:
		return refuse(CodeMalformed, "envelope: session_id longer than %d bytes", maxIDLen)
	case len(b.Nonce) != NonceSize:
		return refuse(CodeMalformed, "envelope: nonce must be %d bytes, got %d", NonceSize, len(b.Nonce))
	case b.SendTime == nil || b.SendTime.CheckValid() != nil:
		return refuse(CodeMalformed, "envelope: send_time is missing or invalid")
	case b.Decision == nil || len(b.Decision.Statement) == 0:
		return refuse(CodeMalformed, "envelope: decision.statement is missing")
	case len(b.SenderCertificate) == 0:
		return refuse(CodeMalformed, "envelope: sender_certificate is missing")
	case len(b.InReplyTo) != 0 && len(b.InReplyTo) != NonceSize:
		return refuse(CodeMalformed, "envelope: in_reply_to must be empty or %d bytes", NonceSize)
	}
	return nil
}

// wireDecision is the part of a registry answer an envelope carries.
func wireDecision(resp *trustfedv1.CheckInteractionResponse) *gatewayv1.Decision {
	return &gatewayv1.Decision{
		Statement: resp.Statement, Certification: resp.Certification, Certificate: resp.Certificate,
		KeyId: resp.KeyId, Signature: resp.Signature,
	}
}

// answerOf rebuilds the registry answer a decision's statement stands for,
// so that attestation.VerifyDecisionWith can check it: every field it
// compares is taken from the statement, the rest is what vouches for it.
func answerOf(d *gatewayv1.Decision, st *trustfedv1.DecisionStatement) *trustfedv1.CheckInteractionResponse {
	return &trustfedv1.CheckInteractionResponse{
		Decision: st.Decision, Reasons: st.Reasons, EffectiveLevel: st.EffectiveLevel,
		FromLevel: st.FromLevel, ToLevel: st.ToLevel, RequiredLevel: st.RequiredLevel,
		AgreementId: st.AgreementId, Meta: &trustfedv1.ReadMeta{Index: st.Index},
		FromLevelCaps: st.FromLevelCaps, ToLevelCaps: st.ToLevelCaps, Controls: st.Controls,
		DecidedAt: st.DecidedAt, ValidUntil: st.ValidUntil, Statement: d.Statement,
		Signature: d.Signature, KeyId: st.KeyId, RequiresDualAuthorization: st.RequiresDualAuthorization,
		AuthorizationId: st.AuthorizationId, AuthorizationUseIndex: st.AuthorizationUseIndex,
		Certification: d.Certification, Certificate: d.Certificate,
	}
}

func unmarshalStatement(b []byte, st *trustfedv1.DecisionStatement) error {
	return proto.Unmarshal(b, st)
}

// certCache remembers member certificates whose chain verified, by
// SHA-256 of their DER, so that each message costs one signature check,
// not a chain verification. An entry is used only within the
// certificate's validity; the cache is emptied when full.
type certCache struct {
	mu sync.Mutex
	m  map[[32]byte]*memberCert
}

type memberCert struct {
	leaf      *x509.Certificate
	org, node string
	pub       ed25519.PublicKey
}

const certCacheSize = 4096

// check returns the verified member certificate der (from the cache when
// c is not nil and holds it).
func (c *certCache) check(der []byte, roots *x509.CertPool, now time.Time) (*memberCert, error) {
	var h [32]byte
	if c != nil {
		h = sha256.Sum256(der)
		c.mu.Lock()
		mc := c.m[h]
		c.mu.Unlock()
		if mc != nil && !now.Before(mc.leaf.NotBefore) && !now.After(mc.leaf.NotAfter) {
			return mc, nil
		}
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, refuseErr(CodeBadSender, err, "envelope: sender_certificate does not parse")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, refuseErr(CodeBadSender, err, "envelope: sender_certificate is not a valid member certificate of the federation")
	}
	org, node, ok := attestation.MemberFromCert(leaf)
	if !ok {
		return nil, refuse(CodeBadSender, "envelope: sender_certificate names no member node")
	}
	pub, ok := leaf.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, refuse(CodeBadSender, "envelope: sender_certificate key is not ed25519")
	}
	mc := &memberCert{leaf: leaf, org: org, node: node, pub: pub}
	if c != nil {
		c.mu.Lock()
		if c.m == nil || len(c.m) >= certCacheSize {
			c.m = map[[32]byte]*memberCert{}
		}
		c.m[h] = mc
		c.mu.Unlock()
	}
	return mc, nil
}
