package pii

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

var (
	// ErrBlocked is wrapped by the *BlockedError Apply returns when a
	// finding's type is BLOCK.
	ErrBlocked = errors.New("message carries PII that the policy blocks")
	// ErrHashKey is returned when the policy hashes a type and the key is
	// shorter than MinHashKeyLen.
	ErrHashKey = errors.New("HASH needs a key of at least 16 bytes")
)

// MinHashKeyLen is the shortest per-agreement HMAC key Apply accepts.
const MinHashKeyLen = 16

// BlockedError names the types that made Apply refuse a message.
type BlockedError struct {
	Types []Type // in enum order, each once
}

func (e *BlockedError) Error() string {
	names := make([]string, len(e.Types))
	for i, t := range e.Types {
		names[i] = TypeName(t)
	}
	return fmt.Sprintf("%v: %s", ErrBlocked, strings.Join(names, ", "))
}

func (e *BlockedError) Unwrap() error { return ErrBlocked }

// Policy is the action for each PII type. A type it does not list is PASS,
// as in the registry; an action outside the enum is BLOCK (fail closed).
type Policy map[Type]Action

// Action is the policy's action for a type.
func (p Policy) Action(t Type) Action {
	a, ok := p[t]
	switch {
	case !ok || a == trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED:
		return ActionPass
	case a < ActionPass || a > ActionBlock:
		return ActionBlock
	}
	return a
}

// PolicyFor reads the policy of a (resolved) control profile at a trust
// level, the way the registry's policy.PIIAction does: a rule's action at
// the level, PASS where none is stated. A level outside 0..4 blocks
// everything.
func PolicyFor(cp *trustfedv1.ControlProfile, level uint32) Policy {
	p := make(Policy, numTypes)
	if level > 4 {
		for _, t := range Types {
			p[t] = ActionBlock
		}
		return p
	}
	for _, r := range cp.GetDataHandling().GetPiiRules() {
		if int(level) < len(r.GetByLevel()) && r.ByLevel[level] != trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED {
			if _, seen := p[r.Type]; !seen {
				p[r.Type] = r.ByLevel[level]
			}
		}
	}
	return p
}

// Applied is one finding and what was done to it.
type Applied struct {
	Finding
	Action Action
}

// Result is a message after Apply: the text that may leave and, for each
// finding, its action (spans refer to the input text).
type Result struct {
	Text    string
	Applied []Applied
}

// Apply scans text at the default thresholds and applies p; see
// (*Scanner).Apply.
func Apply(text string, p Policy, key []byte) (Result, error) {
	return defaultScanner.Apply(text, p, key)
}

// Apply scans text and applies the policy to every finding. If any finding
// is BLOCK it returns a *BlockedError naming every blocked type and no text.
// REDACT replaces a value with "[REDACTED:<TYPE>]"; HASH with
// "[HASH:<TYPE>:<32 hex digits>]", the first 16 bytes of
// HMAC-SHA-256(key, TYPE || 0x00 || value); PASS keeps it. A policy that
// hashes any type needs a key of MinHashKeyLen bytes or more, whether or not
// the text holds such a value.
func (s *Scanner) Apply(text string, p Policy, key []byte) (Result, error) {
	for t := range p {
		if p.Action(t) == ActionHash && len(key) < MinHashKeyLen {
			return Result{}, fmt.Errorf("%w (have %d)", ErrHashKey, len(key))
		}
	}
	fs := s.Scan(text)
	applied := make([]Applied, len(fs))
	var blocked [numTypes]bool
	nBlocked := 0
	for i, f := range fs {
		a := p.Action(f.Type)
		applied[i] = Applied{f, a}
		if a == ActionBlock && !blocked[f.Type] {
			blocked[f.Type] = true
			nBlocked++
		}
	}
	if nBlocked > 0 {
		e := &BlockedError{Types: make([]Type, 0, nBlocked)}
		for _, t := range Types {
			if blocked[t] {
				e.Types = append(e.Types, t)
			}
		}
		return Result{}, e
	}
	var b strings.Builder
	b.Grow(len(text) + 16*len(fs))
	last := 0
	var (
		tok []byte
		h   *hasher
	)
	for _, a := range applied {
		switch a.Action {
		case ActionRedact:
			b.WriteString(text[last:a.Start])
			b.WriteString("[REDACTED:")
			b.WriteString(TypeName(a.Type))
			b.WriteByte(']')
			last = a.End
		case ActionHash:
			b.WriteString(text[last:a.Start])
			if h == nil {
				h = newHasher(key)
			}
			tok = h.token(tok[:0], a.Type, a.Value(text))
			b.Write(tok)
			last = a.End
		}
	}
	b.WriteString(text[last:])
	return Result{Text: b.String(), Applied: applied}, nil
}

// HashToken is the token HASH puts in place of a value of type t under key.
func HashToken(key []byte, t Type, value string) string {
	return string(newHasher(key).token(nil, t, value))
}

// hasher makes HASH tokens under one key, reusing its buffers.
type hasher struct {
	m       hash.Hash
	in, sum []byte
}

func newHasher(key []byte) *hasher {
	return &hasher{m: hmac.New(sha256.New, key), in: make([]byte, 0, 128), sum: make([]byte, 0, sha256.Size)}
}

// token appends the token of value to dst: "[HASH:<TYPE>:" and the hex of
// the first 16 bytes of HMAC-SHA-256(key, TYPE || 0x00 || value), then "]".
func (h *hasher) token(dst []byte, t Type, value string) []byte {
	name := TypeName(t)
	h.in = append(append(append(h.in[:0], name...), 0), value...)
	h.m.Reset()
	h.m.Write(h.in)
	h.sum = h.m.Sum(h.sum[:0])
	dst = append(dst, "[HASH:"...)
	dst = append(dst, name...)
	dst = append(dst, ':')
	dst = hex.AppendEncode(dst, h.sum[:16])
	return append(dst, ']')
}
