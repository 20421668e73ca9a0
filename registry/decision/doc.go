// Package decision is what a registry decision is, apart from the server
// that answers it: Evaluate computes the decision on a check from a state,
// NewStatement is what the registry signs about it, and Replay rebuilds the
// state from the audit log and re-derives every logged decision.
//
// It reads the replicated state through the state package and imports no
// gRPC server code, so the CLI and offline verifiers use it without pulling
// in the registry's services.
package decision
