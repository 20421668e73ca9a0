//go:build !trustfed_forge

package registry

import trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"

// The production build never forges: forge_on.go (build tag
// trustfed_forge, used only by the system tests) turns this node into a
// compromised one, to prove the quorum catches it.

func forgeDecision(*trustfedv1.CheckInteractionResponse) {}

const forgeCosign = false
