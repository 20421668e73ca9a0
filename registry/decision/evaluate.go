package decision

import (
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
)

// Evaluate computes the (unsigned) decision on a validated check from the
// state r at time now. It is pure: the same state, request, time and use
// give the same decision, which is what `trustfed audit replay` relies on
// to re-derive every logged decision. use is the Raft index of the use of
// the presented authorisation taken for this check (0 when none was): an
// authorisation whose uses are counted backs the check only with a use
// left (use 0: the caller must then take one before it answers ALLOW) or
// with the use taken at index use.
func Evaluate(r *state.Reader, req *trustfedv1.CheckInteractionRequest, now time.Time, use uint64) (*trustfedv1.CheckInteractionResponse, error) {
	from, ok := r.Organization(req.FromOrganizationId)
	if !ok {
		return nil, state.NotFound("from_organization_id", "organization %q does not exist", req.FromOrganizationId)
	}
	to, ok := r.Organization(req.ToOrganizationId)
	if !ok {
		return nil, state.NotFound("to_organization_id", "organization %q does not exist", req.ToOrganizationId)
	}
	// Both levels read the rows they share once; the agreement's
	// conditions use the parties and levels read here instead of reading
	// them again (the same results: TestAgreementEndedFor).
	fromLevel, toLevel := r.OrganizationLevels(from, to, now)
	in := policy.Input{From: from, To: to, FromLevel: fromLevel.Level, ToLevel: toLevel.Level, Action: req.Action,
		DataTypes: req.DataTypes, Value: req.Value}
	if ag, ok := r.LatestAgreement(from.Id, to.Id); ok {
		in.Agreement = ag
		in.AgreementEnded, _ = r.AgreementEndedFor(ag, now, state.Party{Org: from, Level: fromLevel}, state.Party{Org: to, Level: toLevel})
	}
	if id := req.GetAuthorizationId(); id != "" {
		in.Authorization = id
		if a, ok := r.Authorization(id); ok {
			in.AuthorizationProblem = state.AuthorizationCovers(a, req, now)
			if in.AuthorizationProblem == "" {
				in.AuthorizationProblem = state.AuthorizationUse(a, use)
			}
		} else {
			in.AuthorizationProblem = "authorization " + id + " does not exist"
		}
	}
	d := policy.Decide(in)
	resp := &trustfedv1.CheckInteractionResponse{
		Decision:       trustfedv1.Decision_DECISION_DENY,
		Reasons:        d.Reasons,
		EffectiveLevel: d.Effective,
		FromLevel:      d.FromLevel,
		ToLevel:        d.ToLevel,
		RequiredLevel:  d.Required,
		AgreementId:    d.AgreementID,
		FromLevelCaps:  fromLevel.Caps,
		ToLevelCaps:    toLevel.Caps,
		Controls:       d.Controls,

		RequiresDualAuthorization: d.RequiresDualAuthorization,
		AuthorizationId:           d.Authorization,
	}
	if d.Allow {
		resp.Decision = trustfedv1.Decision_DECISION_ALLOW
	}
	return resp, nil
}
