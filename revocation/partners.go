package revocation

import (
	"slices"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// Partners returns, in id order, the organisations that have an active
// agreement with org in the state view r.
func Partners(r *state.Reader, org string) []string {
	var out []string
	after := ""
	for {
		page, next := r.Agreements(org, after, 1000)
		for _, ag := range page {
			if ag.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
				continue
			}
			other := ag.OrganizationAId
			if other == org {
				other = ag.OrganizationBId
			}
			out = append(out, other)
		}
		if next == "" {
			break
		}
		after = next
	}
	sortUnique(&out)
	return out
}

func sortUnique(s *[]string) {
	seen := map[string]bool{}
	out := (*s)[:0]
	for _, v := range *s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	slices.Sort(out)
	*s = out
}
