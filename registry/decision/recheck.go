package decision

import (
	"fmt"
	"strings"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Recheck re-evaluates the decision st records on the state r, at the
// statement's decided_at and holding the authorisation use it names, and
// reports how st differs from what that state gives: nil when every output
// of the statement (decision, reasons, levels and their caps, agreement,
// controls, authorisation, valid_until) is the one Evaluate derives. Audit
// replay and a replica vouching for a batch of decisions use it.
func Recheck(r *state.Reader, st *trustfedv1.DecisionStatement) error {
	req := &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: st.FromOrganizationId,
		ToOrganizationId:   st.ToOrganizationId,
		Action:             st.Action,
		DataTypes:          st.DataTypes,
		Value:              st.Value,
		SessionId:          st.SessionId,
		AuthorizationId:    presentedAuthorization(st),
	}
	if _, ok := policy.RequiredLevel(req.Action); !ok {
		return fmt.Errorf("unknown action %q", req.Action)
	}
	if st.DecidedAt == nil {
		return fmt.Errorf("the statement has no decided_at")
	}
	now := st.DecidedAt.AsTime()
	got, err := Evaluate(r, req, now, st.AuthorizationUseIndex)
	if err != nil {
		return fmt.Errorf("the check fails: %w", err)
	}
	if diffs := diffDecision(st, got, timestamppb.New(now.Add(r.FreshnessWindow()))); len(diffs) > 0 {
		return fmt.Errorf("%s", strings.Join(diffs, "; "))
	}
	return nil
}
