package gateway

import (
	"errors"
	"fmt"
	"strings"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Code is the machine-readable reason a gateway refused a message. The
// codes are stable strings: they travel in Reply.code and in logs.
type Code string

// Refusal codes. Every refusal, outbound or inbound, carries exactly one.
const (
	// CodeMalformed: the envelope or its body does not parse, or a field is
	// missing or out of range.
	CodeMalformed Code = "MALFORMED"
	// CodeBadSender: the sender certificate does not chain to the federation
	// CA, is not a member certificate, is expired, or names another node.
	CodeBadSender Code = "BAD_SENDER"
	// CodeBadSignature: the envelope signature does not verify with the
	// sender node's key.
	CodeBadSignature Code = "BAD_SIGNATURE"
	// CodeWrongRecipient: the envelope is addressed to another organisation.
	CodeWrongRecipient Code = "WRONG_RECIPIENT"
	// CodeDecisionInvalid: the registry's decision does not verify (no
	// quorum certificate, unknown key, statement and answer differ).
	CodeDecisionInvalid Code = "DECISION_INVALID"
	// CodeDecisionMismatch: the decision is for another pair of
	// organisations, another action or another session than the envelope.
	CodeDecisionMismatch Code = "DECISION_MISMATCH"
	// CodeDecisionDenied: the decision is a DENY.
	CodeDecisionDenied Code = "DECISION_DENIED"
	// CodeDecisionExpired: the decision is past its valid_until.
	CodeDecisionExpired Code = "DECISION_EXPIRED"
	// CodeDecisionStale: an event (revocation, suspension, level change,
	// agreement end, session end) about one of the parties was committed
	// after the decision: the sender must ask the registry again.
	CodeDecisionStale Code = "DECISION_STALE"
	// CodeUnconfirmed: the receiver's invalidation stream is down, so it
	// cannot confirm that nothing invalidated the decision since.
	CodeUnconfirmed Code = "UNCONFIRMED"
	// CodeReplayed: the (sender node, nonce) pair was seen before.
	CodeReplayed Code = "REPLAYED"
	// CodeOutsideWindow: send_time is outside the receiver's window.
	CodeOutsideWindow Code = "OUTSIDE_WINDOW"
	// CodeControls: the payload breaks the decision's controls (a BLOCKed
	// PII type present, or no payload policy configured).
	CodeControls Code = "CONTROLS"
	// CodeGate: a threat gate refused the message (or no gate configured).
	CodeGate Code = "GATE"
	// CodeNoPartner: no endpoint is configured for the recipient.
	CodeNoPartner Code = "NO_PARTNER"
	// CodeRegistry: the registry could not be asked (every address failed).
	CodeRegistry Code = "REGISTRY_UNAVAILABLE"
	// CodeNotAuthorized: the registry refused this node's credentials (its
	// organisation is suspended or revoked, or the node was removed).
	CodeNotAuthorized Code = "NOT_AUTHORIZED"
	// CodeTransport: the message could not be delivered.
	CodeTransport Code = "TRANSPORT"
	// CodeRefusedByPartner: the partner's gateway refused the envelope;
	// PartnerCode says why.
	CodeRefusedByPartner Code = "REFUSED_BY_PARTNER"
	// CodeHandler: the receiving agent's handler failed.
	CodeHandler Code = "HANDLER"
)

// ErrRefused is what every *RefusedError wraps: errors.Is(err, ErrRefused)
// tells a refusal from other errors.
var ErrRefused = errors.New("refused")

// RefusedError is a refusal by this gateway (or, with
// CodeRefusedByPartner, by the partner's), with its reason.
type RefusedError struct {
	Code Code
	// PartnerCode is the partner gateway's code (CodeRefusedByPartner only).
	PartnerCode Code
	// Detail says what exactly failed, naming the field.
	Detail string
	// Reasons are the registry's reasons (CodeDecisionDenied only).
	Reasons []*trustfedv1.Reason
	err     error
}

func (e *RefusedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "gateway refused (%s", e.Code)
	if e.PartnerCode != "" {
		fmt.Fprintf(&b, ": %s", e.PartnerCode)
	}
	b.WriteString(")")
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, r := range e.Reasons {
		fmt.Fprintf(&b, " [%s: %s]", r.GetCode(), r.GetMessage())
	}
	if e.err != nil {
		b.WriteString(": " + e.err.Error())
	}
	return b.String()
}

// Unwrap returns ErrRefused and the underlying cause, if any.
func (e *RefusedError) Unwrap() []error {
	if e.err != nil {
		return []error{ErrRefused, e.err}
	}
	return []error{ErrRefused}
}

func refuse(code Code, format string, args ...any) *RefusedError {
	return &RefusedError{Code: code, Detail: fmt.Sprintf(format, args...)}
}

func refuseErr(code Code, err error, format string, args ...any) *RefusedError {
	return &RefusedError{Code: code, Detail: fmt.Sprintf(format, args...), err: err}
}

// CodeOf returns the code of the refusal err wraps ("" if none).
func CodeOf(err error) Code {
	var r *RefusedError
	if errors.As(err, &r) {
		return r.Code
	}
	return ""
}
