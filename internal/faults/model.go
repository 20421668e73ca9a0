package faults

import (
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation of the workload does.
type Kind int

// The operations the model follows. Orgs are indices into the model's
// organisations (the workload uses two, A = 0 and B = 1).
const (
	// OpRename sets an organisation's name (UpdateOrganization, one admin).
	OpRename Kind = iota
	// OpSetLevel sets an organisation's declared level (an admin change
	// proposed by one admin and approved by a second).
	OpSetLevel
	// OpRead reads an organisation's name and declared level linearizably
	// (GetOrganization).
	OpRead
	// OpCheck asks for the effective level of an interaction between the two
	// organisations (CheckInteraction with a quorum certificate).
	OpCheck
)

func (k Kind) String() string {
	switch k {
	case OpRename:
		return "rename"
	case OpSetLevel:
		return "set-level"
	case OpRead:
		return "read"
	case OpCheck:
		return "check"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Orgs is how many organisations the model follows.
const Orgs = 2

// Input is an operation's request.
type Input struct {
	Kind  Kind
	Org   int    // OpRename, OpSetLevel, OpRead: which organisation
	Name  string // OpRename
	Level uint32 // OpSetLevel
}

// Output is what an operation answered. Unknown marks a write whose
// outcome the client never learnt (a timeout, a lost connection): it may
// or may not have taken effect, and its Return is set past every other
// operation, as porcupine expects of an operation that never returned.
type Output struct {
	Unknown bool
	Name    string // OpRead
	Level   uint32 // OpRead: declared level; OpCheck: effective level
}

// Org is the model's state of one organisation.
type Org struct {
	Name  string
	Level uint32
}

// State is the model's state: every organisation, a comparable value.
type State [Orgs]Org

// NewModel is the sequential specification of the workload's operations,
// starting from init: a rename or level change takes effect at once; a read
// returns the organisation's current name and level; a check's effective
// level is the lower of the two organisations' levels (the minimum trust
// rule, with every declared level at or below the attested one).
func NewModel(init State) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return init },
		Step: func(st, in, out any) (bool, any) {
			s, i, o := st.(State), in.(Input), out.(Output)
			switch i.Kind {
			case OpRename:
				s[i.Org].Name = i.Name
				return true, s
			case OpSetLevel:
				s[i.Org].Level = i.Level
				return true, s
			case OpRead:
				return !o.Unknown && o.Name == s[i.Org].Name && o.Level == s[i.Org].Level, s
			case OpCheck:
				return !o.Unknown && o.Level == min(s[0].Level, s[1].Level), s
			}
			return false, s
		},
		Equal: func(a, b any) bool { return a.(State) == b.(State) },
		Hash: func(st any) uint64 {
			h := fnv.New64a()
			for _, o := range st.(State) {
				_, _ = fmt.Fprintf(h, "%s\x00%d\x00", o.Name, o.Level)
			}
			return h.Sum64()
		},
		DescribeOperation: describe,
		DescribeOperationMetadata: func(m any) string {
			if m, ok := m.(Meta); ok && m.Node != "" {
				return "on " + m.Node
			}
			return ""
		},
		DescribeState: func(st any) string {
			s := st.(State)
			parts := make([]string, len(s))
			for i, o := range s {
				parts[i] = fmt.Sprintf("%c{%q L%d}", 'A'+i, o.Name, o.Level)
			}
			return strings.Join(parts, " ")
		},
	}
}

func describe(in, out any) string {
	i, o := in.(Input), out.(Output)
	org := string(rune('A' + i.Org))
	res := ""
	if o.Unknown {
		res = " → ?"
	}
	switch i.Kind {
	case OpRename:
		return fmt.Sprintf("rename(%s, %q)%s", org, i.Name, res)
	case OpSetLevel:
		return fmt.Sprintf("set-level(%s, %d)%s", org, i.Level, res)
	case OpRead:
		return fmt.Sprintf("read(%s) → %q L%d", org, o.Name, o.Level)
	case OpCheck:
		return fmt.Sprintf("check(A, B) → L%d", o.Level)
	}
	return i.Kind.String()
}
