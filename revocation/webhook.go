package revocation

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Headers of a signed webhook notification.
const (
	// HeaderEventID carries the event id receivers de-duplicate by.
	HeaderEventID = "Trustfed-Event-Id"
	// HeaderTimestamp carries the signing time, RFC 3339 with nanoseconds, UTC.
	HeaderTimestamp = "Trustfed-Timestamp"
	// HeaderKeyID names the key that signed: the sending registry node's
	// endorsed key (GET /v1/keys lists it with its node id and validity; a
	// cluster without node keys signs with its registry key). Receivers pick
	// the public key by it; it is not itself signed.
	HeaderKeyID = "Trustfed-Key-Id"
	// HeaderSignature is the standard base64 of the ed25519 signature, for
	// attestation.PurposeWebhook, of webhookMessage(event id, timestamp, body).
	HeaderSignature = "Trustfed-Signature"
)

// DefaultWebhookMaxSkew is the clock skew VerifyWebhook accepts when given
// none.
const DefaultWebhookMaxSkew = 5 * time.Minute

// Errors of the webhook wire format.
var (
	// ErrWebhookHeader: a header is missing or malformed.
	ErrWebhookHeader = errors.New("invalid webhook header")
	// ErrWebhookSkew: the timestamp is too far from the receiver's clock.
	ErrWebhookSkew = errors.New("webhook timestamp outside the allowed skew")
)

// maxEventIDLen bounds an event id.
const maxEventIDLen = 256

// validEventID reports whether id is 1..256 visible ASCII characters (no
// space, no newline: the signed message separates its fields by "\n").
func validEventID(id string) bool {
	if id == "" || len(id) > maxEventIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// webhookMessage is what a webhook signature covers:
// eventID + "\n" + timestamp + "\n" + body.
func webhookMessage(eventID, timestamp string, body []byte) []byte {
	out := make([]byte, 0, len(eventID)+len(timestamp)+2+len(body))
	out = append(out, eventID...)
	out = append(out, '\n')
	out = append(out, timestamp...)
	out = append(out, '\n')
	return append(out, body...)
}

// formatTimestamp is the HeaderTimestamp form of ts.
func formatTimestamp(ts time.Time) string { return ts.UTC().Format(time.RFC3339Nano) }

// SignWebhook returns the four Trustfed-* headers that make body a signed
// notification of event eventID at ts, signed by the registry key key known
// to receivers as keyID. The event id must be 1..256 visible ASCII
// characters; key must be an ed25519 private key.
func SignWebhook(key ed25519.PrivateKey, keyID, eventID string, ts time.Time, body []byte) (http.Header, error) {
	switch {
	case !validEventID(eventID):
		return nil, fmt.Errorf("sign webhook: %w: %s %q is not 1..%d visible ASCII characters",
			ErrWebhookHeader, HeaderEventID, eventID, maxEventIDLen)
	case !validEventID(keyID):
		return nil, fmt.Errorf("sign webhook: %w: %s %q is not 1..%d visible ASCII characters",
			ErrWebhookHeader, HeaderKeyID, keyID, maxEventIDLen)
	case len(key) != ed25519.PrivateKeySize:
		return nil, fmt.Errorf("sign webhook: %w: ed25519 private key of %d bytes", attestation.ErrInvalidKey, len(key))
	}
	stamp := formatTimestamp(ts)
	sig := attestation.Sign(key, attestation.PurposeWebhook, webhookMessage(eventID, stamp, body))
	h := make(http.Header, 4)
	h.Set(HeaderEventID, eventID)
	h.Set(HeaderTimestamp, stamp)
	h.Set(HeaderKeyID, keyID)
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	return h, nil
}

// WebhookSigner is the key a node signs notifications with at a time: its
// endorsed node key valid then (attestation.Signer keeps the private half
// on the node or in an HSM) and the key id receivers look it up by.
type WebhookSigner func(now time.Time) (attestation.Signer, string, error)

// SignWebhookWith is SignWebhook with a Signer (a node key, possibly in an
// HSM) instead of a raw private key.
func SignWebhookWith(ctx context.Context, s attestation.Signer, keyID, eventID string, ts time.Time, body []byte) (http.Header, error) {
	switch {
	case !validEventID(eventID):
		return nil, fmt.Errorf("sign webhook: %w: %s %q is not 1..%d visible ASCII characters",
			ErrWebhookHeader, HeaderEventID, eventID, maxEventIDLen)
	case !validEventID(keyID):
		return nil, fmt.Errorf("sign webhook: %w: %s %q is not 1..%d visible ASCII characters",
			ErrWebhookHeader, HeaderKeyID, keyID, maxEventIDLen)
	}
	stamp := formatTimestamp(ts)
	sig, err := s.Sign(ctx, attestation.PurposeWebhook, webhookMessage(eventID, stamp, body))
	if err != nil {
		return nil, fmt.Errorf("sign webhook %s: %w", eventID, err)
	}
	h := make(http.Header, 4)
	h.Set(HeaderEventID, eventID)
	h.Set(HeaderTimestamp, stamp)
	h.Set(HeaderKeyID, keyID)
	h.Set(HeaderSignature, base64.StdEncoding.EncodeToString(sig))
	return h, nil
}

// VerifyWebhookWithKeys checks a notification as VerifyWebhook does, with
// the public key the Trustfed-Key-Id header names in the registry's
// published keys (GET /v1/keys, client.Keys): the key must be known and, if
// it is a node key, valid (endorsed, not expired, not revoked) at the
// notification's timestamp.
func VerifyWebhookWithKeys(keys map[string]*trustfedv1.RegistryKey, h http.Header, body []byte, now time.Time, maxSkew time.Duration) (string, error) {
	keyID, err := webhookHeader(h, HeaderKeyID)
	if err != nil {
		return "", err
	}
	k, ok := keys[keyID]
	if !ok {
		return "", fmt.Errorf("verify webhook: %w: %s %q is not a published registry key", attestation.ErrNodeKey, HeaderKeyID, keyID)
	}
	stamp, err := webhookHeader(h, HeaderTimestamp)
	if err != nil {
		return "", err
	}
	ts, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		return "", fmt.Errorf("verify webhook: %w: %s: %w", ErrWebhookHeader, HeaderTimestamp, err)
	}
	if err := attestation.CheckRegistryKeyAt(k, ts); err != nil {
		return "", fmt.Errorf("verify webhook: %w", err)
	}
	return VerifyWebhook(k.PublicKey, h, body, now, maxSkew)
}

// VerifyWebhook checks a notification received with headers h and body: the
// headers are present and well formed, the signature is pub's over the event
// id, timestamp and body, and the timestamp lies within ±maxSkew of now
// (DefaultWebhookMaxSkew if maxSkew <= 0). It returns the event id, which
// the receiver should then de-duplicate by (see Deduper): the registry
// retries until it sees a 2xx, so a notification may arrive more than once.
//
// Errors wrap ErrWebhookHeader (naming the header), attestation.ErrSignature
// or ErrWebhookSkew.
func VerifyWebhook(pub ed25519.PublicKey, h http.Header, body []byte, now time.Time, maxSkew time.Duration) (string, error) {
	if maxSkew <= 0 {
		maxSkew = DefaultWebhookMaxSkew
	}
	eventID, err := webhookHeader(h, HeaderEventID)
	if err != nil {
		return "", err
	}
	if !validEventID(eventID) {
		return "", fmt.Errorf("verify webhook: %w: %s is not 1..%d visible ASCII characters",
			ErrWebhookHeader, HeaderEventID, maxEventIDLen)
	}
	stamp, err := webhookHeader(h, HeaderTimestamp)
	if err != nil {
		return "", err
	}
	ts, err := time.Parse(time.RFC3339Nano, stamp)
	if err != nil {
		return "", fmt.Errorf("verify webhook: %w: %s: %w", ErrWebhookHeader, HeaderTimestamp, err)
	}
	sig64, err := webhookHeader(h, HeaderSignature)
	if err != nil {
		return "", err
	}
	sig, err := base64.StdEncoding.DecodeString(sig64)
	if err != nil {
		return "", fmt.Errorf("verify webhook: %w: %s is not standard base64: %w", ErrWebhookHeader, HeaderSignature, err)
	}
	if err := attestation.Verify(pub, attestation.PurposeWebhook, webhookMessage(eventID, stamp, body), sig); err != nil {
		return "", fmt.Errorf("verify webhook %s: %w", eventID, err)
	}
	if d := now.Sub(ts); d > maxSkew || d < -maxSkew {
		return "", fmt.Errorf("verify webhook %s: %w: %s %s is %s from now (allowed ±%s)",
			eventID, ErrWebhookSkew, HeaderTimestamp, stamp, d.Round(time.Millisecond), maxSkew)
	}
	return eventID, nil
}

// webhookHeader returns the single value of header name, or an error naming it.
func webhookHeader(h http.Header, name string) (string, error) {
	vs := h.Values(name)
	switch {
	case len(vs) == 0 || vs[0] == "":
		return "", fmt.Errorf("verify webhook: %w: %s is missing", ErrWebhookHeader, name)
	case len(vs) > 1:
		return "", fmt.Errorf("verify webhook: %w: %s is repeated", ErrWebhookHeader, name)
	}
	return vs[0], nil
}

// Deduper remembers the most recent event ids a receiver has seen, so it can
// tell a redelivery from a new event. It holds at most its capacity; the
// oldest ids are forgotten first. It is safe for concurrent use.
type Deduper struct {
	mu   sync.Mutex
	seen map[string]uint64 // id -> sequence number of its ring slot
	ring []string
	next uint64 // sequence number of the next insertion
}

// NewDeduper returns a Deduper remembering up to capacity ids (at least 1).
func NewDeduper(capacity int) *Deduper {
	capacity = max(capacity, 1)
	return &Deduper{seen: make(map[string]uint64, capacity), ring: make([]string, capacity)}
}

// Seen reports whether id was seen before, and remembers it. A receiver calls
// it after VerifyWebhook: true means a redelivery to acknowledge (2xx)
// without acting on it again.
func (d *Deduper) Seen(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[id]; ok {
		return true
	}
	slot := d.next % uint64(len(d.ring))
	if old := d.ring[slot]; d.next >= uint64(len(d.ring)) {
		if seq, ok := d.seen[old]; ok && seq == d.next-uint64(len(d.ring)) {
			delete(d.seen, old)
		}
	}
	d.ring[slot] = id
	d.seen[id] = d.next
	d.next++
	return false
}

// Forget drops id, for a receiver that failed to act on an event after
// Seen: the registry's retry is then treated as new.
func (d *Deduper) Forget(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.seen, id)
}
