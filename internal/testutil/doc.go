// Package testutil holds helpers shared by tests that drive real trustfed
// processes: building the binary, starting and stopping servers, TLS
// material for a test cluster, TCP proxies that partition servers from each
// other (Network), and waiting on conditions with deadlines.
package testutil
