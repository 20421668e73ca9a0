package policy

import (
	"fmt"
	"slices"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Reason codes of a denial.
const (
	ReasonNotActive           = "NOT_ACTIVE"
	ReasonLevelTooLow         = "LEVEL_TOO_LOW"
	ReasonNoAgreement         = "NO_AGREEMENT"
	ReasonAgreementNotInForce = "AGREEMENT_NOT_IN_FORCE"
	ReasonOutOfScope          = "ACTION_OUT_OF_AGREEMENT_SCOPE"
	ReasonControlsConflict    = "CONTROLS_CONFLICT"
	ReasonActionNotAllowed    = "ACTION_NOT_ALLOWED_BY_CONTROLS"
	ReasonPIIBlocked          = "PII_BLOCKED"
	ReasonValueOverLimit      = "VALUE_OVER_LIMIT"
	ReasonDualAuthorization   = "DUAL_AUTHORIZATION_REQUIRED"
)

// Input is everything a decision depends on.
type Input struct {
	From, To *trustfedv1.Organization
	// FromLevel and ToLevel are the parties' levels at decision time
	// (state.Reader.OrganizationLevel).
	FromLevel, ToLevel uint32
	Action             string
	// Agreement is the active agreement between From and To, or nil.
	Agreement *trustfedv1.Agreement
	// AgreementEnded, when not empty, says why Agreement does not hold at
	// decision time (window, termination conditions).
	AgreementEnded string
	// DataTypes are the PII types the interaction carries; Value its value.
	DataTypes []trustfedv1.PiiType
	Value     int64
	// Authorization, when not empty, is the id of a granted dual
	// authorisation covering exactly this interaction; AuthorizationProblem
	// says why a named one does not.
	Authorization        string
	AuthorizationProblem string
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow                         bool
	Reasons                       []*trustfedv1.Reason
	FromLevel, ToLevel, Effective uint32
	Required                      uint32
	AgreementID                   string
	// Controls is the most restrictive combination of both profiles.
	Controls *trustfedv1.ControlProfile
	// RequiresDualAuthorization: the controls require two approvals (TC5).
	RequiresDualAuthorization bool
	// Authorization is the granted authorisation the decision relied on.
	Authorization string
}

// Decide answers whether the interaction may happen. It collects every reason
// for a denial, not only the first. The action must be known (see RequiredLevel).
func Decide(in Input) Decision {
	d := Decision{
		FromLevel: in.FromLevel,
		ToLevel:   in.ToLevel,
	}
	d.Effective = min(d.FromLevel, d.ToLevel) // AG-783 TC1: never negotiated
	d.Required, _ = RequiredLevel(in.Action)
	deny := func(code, format string, args ...any) {
		d.Reasons = append(d.Reasons, &trustfedv1.Reason{Code: code, Message: fmt.Sprintf(format, args...)})
	}
	for _, o := range []*trustfedv1.Organization{in.From, in.To} {
		if o.GetStatus() != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
			deny(ReasonNotActive, "organization %q is %s", o.GetId(), statusName(o.GetStatus()))
		}
	}
	if d.Effective < d.Required {
		deny(ReasonLevelTooLow, "action %q needs level %d (%s); effective level is %d (%s)",
			in.Action, d.Required, LevelName(d.Required), d.Effective, LevelName(d.Effective))
	}
	if in.Agreement != nil {
		d.AgreementID = in.Agreement.GetId()
	}
	if d.Required > LevelUntrusted {
		switch {
		case in.Agreement == nil:
			deny(ReasonNoAgreement, "no active agreement between %q and %q; action %q needs one", in.From.GetId(), in.To.GetId(), in.Action)
		case in.AgreementEnded != "":
			deny(ReasonAgreementNotInForce, "%s", in.AgreementEnded)
		case !slices.Contains(in.Agreement.GetParsedTerms().GetScope().GetAllowedActions(), in.Action):
			deny(ReasonOutOfScope, "agreement %s does not cover action %q (scope: %v)", in.Agreement.GetId(), in.Action, in.Agreement.GetParsedTerms().GetScope().GetAllowedActions())
		}
	}
	d.Controls, d.RequiresDualAuthorization = decideControls(in, d.Effective, deny)
	if d.RequiresDualAuthorization {
		switch {
		case in.Authorization != "" && in.AuthorizationProblem == "":
			d.Authorization = in.Authorization
		case in.AuthorizationProblem != "":
			deny(ReasonDualAuthorization, "the resolved controls require dual authorisation: %s", in.AuthorizationProblem)
		default:
			deny(ReasonDualAuthorization, "the resolved controls require dual authorisation: open one with RequestAuthorization, have both parties approve it, and check again with its id")
		}
	}
	d.Allow = len(d.Reasons) == 0
	return d
}

// decideControls resolves both control profiles (TC3) and denies what the
// resolved controls forbid at the effective level.
func decideControls(in Input, level uint32, deny func(code, format string, args ...any)) (*trustfedv1.ControlProfile, bool) {
	controls, conflicts := Resolve(in.From.GetControlProfile(), in.To.GetControlProfile())
	for _, c := range conflicts {
		deny(ReasonControlsConflict, "%s: %s (%s)", c.Category, c.Reason, c.Field)
	}
	auth := controls.GetActionAuthorization()
	if allowed := auth.GetAllowedActions(); len(allowed) > 0 && !slices.Contains(allowed, in.Action) {
		deny(ReasonActionNotAllowed, "the resolved controls allow only %v", allowed)
	}
	var blocked []string
	for _, t := range in.DataTypes {
		if PIIAction(controls, t, level) == trustfedv1.PiiAction_PII_ACTION_BLOCK {
			blocked = append(blocked, t.String())
		}
	}
	if len(blocked) > 0 {
		deny(ReasonPIIBlocked, "data types %v are BLOCK at level %d", blocked, level)
	}
	for _, l := range auth.GetLimits() {
		if l.Action == in.Action && in.Value > l.MaxValue {
			deny(ReasonValueOverLimit, "value %d is above the limit %d for %q", in.Value, l.MaxValue, in.Action)
		}
	}
	dual := auth.GetDualAuthorizationAlways() || (auth.GetDualAuthorizationAboveValue() > 0 && in.Value > auth.GetDualAuthorizationAboveValue())
	return controls, dual
}

// PIIAction is the action the controls set for a PII type at a level
// (PASS when they state nothing).
func PIIAction(cp *trustfedv1.ControlProfile, t trustfedv1.PiiType, level uint32) trustfedv1.PiiAction {
	for _, r := range cp.GetDataHandling().GetPiiRules() {
		if r.Type == t && int(level) < len(r.ByLevel) && r.ByLevel[level] != trustfedv1.PiiAction_PII_ACTION_UNSPECIFIED {
			return r.ByLevel[level]
		}
	}
	return trustfedv1.PiiAction_PII_ACTION_PASS
}

func statusName(s trustfedv1.OrganizationStatus) string {
	switch s {
	case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED:
		return "suspended"
	case trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED:
		return "revoked"
	default:
		return "not active"
	}
}
