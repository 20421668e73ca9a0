package gateway

import (
	"context"
	"errors"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// PolicyInput is what a PayloadPolicy judges: a payload crossing the
// boundary between two organisations under a registry decision.
type PolicyInput struct {
	// From and To are the sending and receiving organisations.
	From, To string
	Action   string
	// Controls are the decision's resolved (most restrictive) controls and
	// Level its effective level: the PII action of each type is
	// Controls.data_handling.pii_rules[type].by_level[Level].
	Controls *trustfedv1.ControlProfile
	Level    uint32
	// AgreementID is the agreement the decision relied on (the scope of a
	// per-agreement HASH key).
	AgreementID string
	// DataTypes are the PII types the decision was asked for.
	DataTypes []trustfedv1.PiiType
	Payload   []byte
}

// PayloadPolicy applies a decision's data-handling controls to payloads.
// Implementations must be safe for concurrent use and fail closed: an
// error refuses the message.
type PayloadPolicy interface {
	// Outbound returns the payload that may leave under in.Controls at
	// in.Level (BLOCKed types refuse, REDACT and HASH rewrite).
	Outbound(ctx context.Context, in PolicyInput) ([]byte, error)
	// Inbound checks that a received payload respects in.Controls at
	// in.Level: no value of a type the controls BLOCK, none left in clear
	// that they REDACT or HASH.
	Inbound(ctx context.Context, in PolicyInput) error
}

// Direction is which way a message crosses the boundary.
type Direction int

// Directions.
const (
	Outbound Direction = iota + 1
	Inbound
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return "unknown"
}

// GateMessage is what a threat gate inspects.
type GateMessage struct {
	Direction Direction
	From, To  string // organisations
	Action    string
	Payload   []byte // after the payload policy (outbound) or as received
}

// Gate inspects messages for threats (prompt injection, exfiltration). A
// non-nil error blocks the message. Implementations must be safe for
// concurrent use and block when they cannot finish.
type Gate interface {
	Inspect(ctx context.Context, m GateMessage) error
}

// ErrNotConfigured is the error of the default policy and gate: a gateway
// without a payload policy or a gate refuses every payload (fail closed).
var ErrNotConfigured = errors.New("no payload policy or threat gate configured: refusing (fail closed)")

// refuseAll is the default PayloadPolicy and Gate.
type refuseAll struct{}

func (refuseAll) Outbound(context.Context, PolicyInput) ([]byte, error) { return nil, ErrNotConfigured }
func (refuseAll) Inbound(context.Context, PolicyInput) error            { return ErrNotConfigured }
func (refuseAll) Inspect(context.Context, GateMessage) error            { return ErrNotConfigured }

// PassThrough is a PayloadPolicy and Gate that lets every payload through
// unchanged. It exists for tests and demos of the decision and envelope
// path alone; never configure it in production.
type PassThrough struct{}

// Outbound returns the payload unchanged.
func (PassThrough) Outbound(_ context.Context, in PolicyInput) ([]byte, error) {
	return in.Payload, nil
}

// Inbound accepts every payload.
func (PassThrough) Inbound(context.Context, PolicyInput) error { return nil }

// Inspect accepts every message.
func (PassThrough) Inspect(context.Context, GateMessage) error { return nil }
