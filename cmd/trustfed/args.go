package main

import (
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trustfed/trustfed/ids"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// validateOrgID checks an organisation ID given on the command line.
func validateOrgID(what, id string) error {
	if !ids.Organization.Match(id) {
		return usageErrorf("%s %q is not a valid organisation id (%s)", what, id, ids.Organization)
	}
	return nil
}

// maxLevel is the highest trust level.
const maxLevel = 4

// parseLevel reads a trust level given as a number 0..4 or as its name
// (case-insensitive), e.g. "3" or "trusted".
func parseLevel(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if n > maxLevel {
			return 0, usageErrorf("level %d is out of range 0..%d", n, maxLevel)
		}
		return uint32(n), nil
	}
	for i, name := range levelNames {
		if strings.EqualFold(s, name) {
			return uint32(i), nil
		}
	}
	return 0, usageErrorf("level %q is neither 0..%d nor one of %s", s, maxLevel, strings.Join(levelNames[:], ", "))
}

// readConsistency is the consistency of a read: linearizable unless
// --stale.
func readConsistency(stale bool) trustfedv1.Consistency {
	if stale {
		return trustfedv1.Consistency_CONSISTENCY_STALE
	}
	return trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE
}

// addStaleFlag adds --stale to a read command.
func addStaleFlag(cmd *cobra.Command, stale *bool) {
	cmd.Flags().BoolVar(stale, "stale", false, "read from the answering node without contacting the leader (may be stale)")
}

// exactArgs is cobra.ExactArgs with a usage error naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageErrorf("%s expects %d argument(s) (%s), got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}
