package threat

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Direction is which way a message crosses the boundary.
type Direction int

const (
	// Outbound messages leave this organisation.
	Outbound Direction = iota + 1
	// Inbound messages arrive from a partner.
	Inbound
)

func (d Direction) String() string {
	switch d {
	case Outbound:
		return "outbound"
	case Inbound:
		return "inbound"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Message is what a gate inspects.
type Message struct {
	Direction Direction
	// From and To name the agents, for reasons and logs only.
	From, To string
	Body     string
}

// ReasonCode is the kind of a reason.
type ReasonCode string

// The reason codes, stable strings for logs and audit.
const (
	ReasonInstructionOverride   ReasonCode = "INSTRUCTION_OVERRIDE"
	ReasonRoleOverride          ReasonCode = "ROLE_OVERRIDE"
	ReasonPromptExfiltration    ReasonCode = "PROMPT_EXFILTRATION"
	ReasonToolInjection         ReasonCode = "TOOL_INJECTION"
	ReasonExfilInstruction      ReasonCode = "EXFILTRATION_INSTRUCTION"
	ReasonEncodedInjection      ReasonCode = "ENCODED_INJECTION"
	ReasonHiddenText            ReasonCode = "HIDDEN_TEXT"
	ReasonInvisibleCharacters   ReasonCode = "INVISIBLE_CHARACTERS"
	ReasonSecretLeak            ReasonCode = "SECRET_LEAK"
	ReasonEncodedBlob           ReasonCode = "ENCODED_BLOB"
	ReasonURLExfiltration       ReasonCode = "URL_EXFILTRATION"
	ReasonTooLarge              ReasonCode = "TOO_LARGE"
	ReasonBadDirection          ReasonCode = "BAD_DIRECTION"
	ReasonInspectionInterrupted ReasonCode = "INSPECTION_INTERRUPTED"
)

// Reason is one rule that fired: its code, what it matched (never the
// matched secret itself), the byte span in the body when there is one, and
// its weight in the score.
type Reason struct {
	Code       ReasonCode
	Detail     string
	Start, End int
	Weight     float64
}

// Verdict is a gate's answer.
type Verdict struct {
	Allow   bool
	Score   float64
	Reasons []Reason
}

// Codes are the distinct reason codes of a verdict, sorted.
func (v Verdict) Codes() []ReasonCode {
	var cs []ReasonCode
	for _, r := range v.Reasons {
		if !slices.Contains(cs, r.Code) {
			cs = append(cs, r.Code)
		}
	}
	slices.Sort(cs)
	return cs
}

func (v Verdict) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "allow=%t score=%.2f", v.Allow, v.Score)
	for _, r := range v.Reasons {
		fmt.Fprintf(&b, " %s(%s)", r.Code, r.Detail)
	}
	return b.String()
}

// Gate inspects one message. Implementations must be safe for concurrent
// use and must block (not allow) when they cannot finish, for instance
// when ctx is done.
type Gate interface {
	Inspect(ctx context.Context, m Message) Verdict
}

// score combines weights as independent evidence: 1 − Π(1 − w).
func score(rs []Reason) float64 {
	keep := 1.0
	for _, r := range rs {
		keep *= 1 - math.Min(math.Max(r.Weight, 0), 1)
	}
	return 1 - keep
}

// Chain is a gate that asks every gate in turn and blocks if any blocks;
// its score is the highest and its reasons are all of theirs.
func Chain(gates ...Gate) Gate { return chain(gates) }

type chain []Gate

func (c chain) Inspect(ctx context.Context, m Message) Verdict {
	out := Verdict{Allow: true}
	for _, g := range c {
		v := g.Inspect(ctx, m)
		out.Allow = out.Allow && v.Allow
		out.Score = math.Max(out.Score, v.Score)
		out.Reasons = append(out.Reasons, v.Reasons...)
	}
	return out
}
