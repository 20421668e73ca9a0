package decision

import (
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// NewStatement is what the registry signs about a decision: every
// input of the check (the request, the authorisation it presented) and
// every output of resp (the caps on each party's level included), which
// must carry its read meta (index), decided_at, valid_until and key_id.
func NewStatement(req *trustfedv1.CheckInteractionRequest, resp *trustfedv1.CheckInteractionResponse) *trustfedv1.DecisionStatement {
	return &trustfedv1.DecisionStatement{
		FromOrganizationId: req.FromOrganizationId,
		ToOrganizationId:   req.ToOrganizationId,
		Action:             req.Action,
		DataTypes:          req.DataTypes,
		Value:              req.Value,
		SessionId:          req.SessionId,
		Decision:           resp.Decision,
		Reasons:            resp.Reasons,
		EffectiveLevel:     resp.EffectiveLevel,
		FromLevel:          resp.FromLevel,
		ToLevel:            resp.ToLevel,
		FromLevelCaps:      resp.FromLevelCaps,
		ToLevelCaps:        resp.ToLevelCaps,
		RequiredLevel:      resp.RequiredLevel,
		AgreementId:        resp.AgreementId,
		Controls:           resp.Controls,
		Index:              resp.GetMeta().GetIndex(),
		DecidedAt:          resp.DecidedAt,
		ValidUntil:         resp.ValidUntil,
		KeyId:              resp.KeyId,
		AuthorizationId:    resp.AuthorizationId,
		// What the request presented, even when it was refused, so that
		// replay re-derives the decision from the statement alone.
		PresentedAuthorizationId:  req.AuthorizationId,
		RequiresDualAuthorization: resp.RequiresDualAuthorization,
		AuthorizationUseIndex:     resp.AuthorizationUseIndex,
	}
}
