//go:build trustfed_forge

package registry

import trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"

// A compromised node, for the system tests only (build tag
// trustfed_forge; never in a release): it turns every denial it decides
// into an ALLOW at the required level, and vouches for every decision
// batch without re-evaluating it. The quorum of honest replicas must keep
// it from answering a forged decision (system_test/scenario_c_test.go).

func forgeDecision(resp *trustfedv1.CheckInteractionResponse) {
	if resp.Decision == trustfedv1.Decision_DECISION_DENY {
		resp.Decision, resp.Reasons = trustfedv1.Decision_DECISION_ALLOW, nil
		resp.EffectiveLevel, resp.FromLevel, resp.ToLevel = resp.RequiredLevel, resp.RequiredLevel, resp.RequiredLevel
	}
}

const forgeCosign = true
