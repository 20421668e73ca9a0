package main

import "github.com/spf13/cobra"

// newServerCmd is replaced by the real server wiring.
func newServerCmd() *cobra.Command {
	return &cobra.Command{Use: "server", Short: "Run a trustfed registry server"}
}
