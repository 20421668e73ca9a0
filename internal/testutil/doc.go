// Package testutil holds helpers shared by tests that drive real trustfed
// processes: building the binary, starting and stopping servers, TLS
// material for a test cluster, and waiting on conditions with deadlines.
package testutil
