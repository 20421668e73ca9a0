package gateway

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/trustfed/trustfed/client/pii"
	"github.com/trustfed/trustfed/client/threat"
)

// PIIPolicy is the PayloadPolicy of client/pii: outbound, it applies the
// decision's resolved controls at its effective level to the payload (a
// BLOCKed type refuses the message and names the types; REDACT and HASH
// rewrite the values; PASS keeps them); inbound, it refuses a payload that
// still carries in clear a value of any type the controls BLOCK, REDACT or
// HASH at that level — the sender did not apply them. The payload is text
// (UTF-8); see docs/pii.md for the detectors and their limits.
type PIIPolicy struct {
	// Scanner finds PII (nil: client/pii at its default thresholds, or
	// the operator's thresholds file loaded with pii.LoadThresholds).
	Scanner *pii.Scanner
	// HashKey returns the HMAC key of an agreement for HASH (at least
	// pii.MinHashKeyLen bytes), the same on both sides of the agreement so
	// equal values still join. nil: a message whose controls HASH a type
	// is refused.
	HashKey func(ctx context.Context, agreementID string) ([]byte, error)
}

// ErrControls is wrapped by every PIIPolicy refusal.
var ErrControls = errors.New("the payload does not satisfy the decision's controls")

func (p PIIPolicy) scanner() *pii.Scanner {
	if p.Scanner != nil {
		return p.Scanner
	}
	return pii.NewScanner(pii.DefaultThresholds())
}

// Outbound applies the controls to in.Payload.
func (p PIIPolicy) Outbound(ctx context.Context, in PolicyInput) ([]byte, error) {
	policy := pii.PolicyFor(in.Controls, in.Level)
	var key []byte
	if hashes(policy) {
		if p.HashKey == nil {
			return nil, fmt.Errorf("%w: the controls hash PII and no agreement key is configured (PIIPolicy.HashKey)", ErrControls)
		}
		var err error
		if key, err = p.HashKey(ctx, in.AgreementID); err != nil {
			return nil, fmt.Errorf("%w: the HASH key of agreement %s: %w", ErrControls, in.AgreementID, err)
		}
	}
	res, err := p.scanner().Apply(string(in.Payload), policy, key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrControls, err)
	}
	return []byte(res.Text), nil
}

// appliedToken matches what REDACT and HASH leave in a payload: not values.
var appliedToken = regexp.MustCompile(`\[(?:REDACTED:[A-Z_]+|HASH:[A-Z_]+:[0-9a-f]{32})\]`)

// Inbound refuses a payload that carries a value the controls do not let
// through in clear.
func (p PIIPolicy) Inbound(_ context.Context, in PolicyInput) error {
	policy := pii.PolicyFor(in.Controls, in.Level)
	// What the sender's REDACT and HASH wrote is not a value of its own.
	text := appliedToken.ReplaceAllStringFunc(string(in.Payload), func(s string) string { return string(make([]byte, len(s))) })
	for _, f := range p.scanner().Scan(text) {
		if a := policy.Action(f.Type); a != pii.ActionPass {
			return fmt.Errorf("%w: a %s value in clear, which the controls %s at level %d", ErrControls, pii.TypeName(f.Type), strings.TrimPrefix(a.String(), "PII_ACTION_"), in.Level)
		}
	}
	return nil
}

func hashes(p pii.Policy) bool {
	for t := range p {
		if p.Action(t) == pii.ActionHash {
			return true
		}
	}
	return false
}

// ThreatGate adapts a client/threat gate (threat.NewRuleGate(threat.Config{})
// for the default rules) to the gateway's Gate: a verdict that does not
// allow the message blocks it with a *ThreatError.
type ThreatGate struct {
	Gate threat.Gate
}

// ThreatError is a message a threat gate blocked, with its verdict.
type ThreatError struct {
	Direction Direction
	Verdict   threat.Verdict
}

func (e *ThreatError) Error() string {
	return fmt.Sprintf("%s message blocked by the threat gate: %v", e.Direction, e.Verdict.Codes())
}

// Inspect runs the threat gate on m.
func (g ThreatGate) Inspect(ctx context.Context, m GateMessage) error {
	if g.Gate == nil {
		return ErrNotConfigured
	}
	dir := threat.Outbound
	if m.Direction == Inbound {
		dir = threat.Inbound
	}
	v := g.Gate.Inspect(ctx, threat.Message{Direction: dir, From: m.From, To: m.To, Body: string(m.Payload)})
	if !v.Allow {
		return &ThreatError{Direction: m.Direction, Verdict: v}
	}
	return nil
}
