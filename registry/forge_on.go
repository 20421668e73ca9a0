//go:build trustfed_forge

package registry

import (
	"fmt"
	"os"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
)

// A misbehaving node, for the system tests only (build tag trustfed_forge;
// never in a release). TRUSTFED_FORGE_MODE picks how:
//   - "lie" (the default): a compromised node. It turns every denial it
//     decides into an ALLOW at the required level, and vouches for every
//     decision batch without re-evaluating it. The quorum of honest
//     replicas must keep it from answering a forged decision.
//   - "dissent": a node whose state diverged. It decides honestly but no
//     decision re-derives on its state, so every head it signs refuses
//     every decision; once a quorum of the others signed another head of
//     such a batch, it must find itself diverged.
var forgeMode = os.Getenv("TRUSTFED_FORGE_MODE")

func forgeDecision(resp *trustfedv1.CheckInteractionResponse) {
	if forgeMode == "dissent" {
		return
	}
	if resp.Decision == trustfedv1.Decision_DECISION_DENY {
		resp.Decision, resp.Reasons = trustfedv1.Decision_DECISION_ALLOW, nil
		resp.EffectiveLevel, resp.FromLevel, resp.ToLevel = resp.RequiredLevel, resp.RequiredLevel, resp.RequiredLevel
	}
}

func forgedVouch() (override bool, err error) {
	if forgeMode == "dissent" {
		return true, fmt.Errorf("%w: every decision differs on this node's state (TRUSTFED_FORGE_MODE=dissent test build)", decision.ErrRederive)
	}
	return true, nil
}
