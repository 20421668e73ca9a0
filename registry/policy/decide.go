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
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow                         bool
	Reasons                       []*trustfedv1.Reason
	FromLevel, ToLevel, Effective uint32
	Required                      uint32
	AgreementID                   string
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
	d.Allow = len(d.Reasons) == 0
	return d
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
