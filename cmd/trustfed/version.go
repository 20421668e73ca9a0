package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/server"
)

// version and commit are set at build time: go build -ldflags "-X
// main.version=$(git describe --tags --always --dirty) -X main.commit=$(git
// rev-parse HEAD)" (make build does). Without them the binary reports the
// VCS revision Go recorded, or "dev".
var version, commit string

// buildVersion is the version the server reports.
func buildVersion() string { return server.ReadBuildInfo(version, commit).Version }

// versionLine is what `trustfed version` and `trustfed --version` print.
func versionLine() string {
	b := server.ReadBuildInfo(version, commit)
	return fmt.Sprintf("trustfed %s (%s, commit %s)\n", b.Version, b.GoVersion, b.Revision)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, Go version and commit of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := io.WriteString(cmd.OutOrStdout(), versionLine())
			return err
		},
	}
}
