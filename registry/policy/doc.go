// Package policy holds the pure decision logic of the registry: trust levels,
// the capability tier of every action, an organisation's level and the
// interaction decision. It reads no clock and no state: callers pass in
// everything a decision depends on, so a decision can be replayed.
package policy
