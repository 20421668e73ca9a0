//go:build !trustfed_forge

package registry

import trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"

// The production build never forges: forge_on.go (build tag
// trustfed_forge, used only by the system tests) turns this node into a
// compromised or a diverged one, to prove the quorum catches it.

func forgeDecision(*trustfedv1.CheckInteractionResponse) {}

// forgedVouch overrides what the cosigner concludes about a decision
// (override false: it does not).
func forgedVouch() (override bool, err error) { return false, nil }
