package registry

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"unicode/utf8"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// Limits of ReportRefusals.
const (
	maxRefusalsPerReport = 64
	maxRefusalDetail     = 256
)

var (
	refusalCode   = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)
	refusalAction = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// ReportRefusals writes what a member gateway refused (GATEWAY_REFUSAL
// audit entries, through the node's audit batcher like decisions) and
// answers once they are committed. The interceptor checked that
// organization_id is the calling member's; every refusal is recorded
// under it and the calling node, whatever the request says.
func (s *registryService) ReportRefusals(ctx context.Context, req *trustfedv1.ReportRefusalsRequest) (*trustfedv1.ReportRefusalsResponse, error) {
	p, _ := PrincipalFrom(ctx)
	if err := validateRefusals(req); err != nil {
		return nil, err
	}
	if !s.auditsDecisions() {
		return nil, state.FailedPrecondition("refusals", "this server keeps no audit log of decisions (-unaudited-decisions)")
	}
	first := make([]uint64, len(req.Refusals))
	errs := make([]error, len(req.Refusals))
	var wg sync.WaitGroup
	for i, r := range req.Refusals {
		r.OrganizationId, r.NodeId = req.OrganizationId, p.MemberNode
		wg.Go(func() {
			res, err := s.batcher.Append(ctx, 0, &commandv1.AuditEvent{Event: &commandv1.AuditEvent_GatewayRefusal{GatewayRefusal: r}, Principal: p.ID})
			first[i], errs[i] = res.seq, err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("audit the refusals: %w", err)
		}
	}
	return &trustfedv1.ReportRefusalsResponse{FirstSequence: slices.Min(first)}, nil
}

func validateRefusals(req *trustfedv1.ReportRefusalsRequest) error {
	if err := state.ValidateOrganizationID("organization_id", req.GetOrganizationId()); err != nil {
		return err
	}
	n := len(req.GetRefusals())
	if n == 0 || n > maxRefusalsPerReport {
		return state.Invalid("refusals", "must hold 1..%d refusals, got %d", maxRefusalsPerReport, n)
	}
	for i, r := range req.Refusals {
		f := func(name string) string { return fmt.Sprintf("refusals[%d].%s", i, name) }
		if r == nil {
			return state.Invalid(f("refusal"), "is required")
		}
		if r.Direction != "outbound" && r.Direction != "inbound" {
			return state.Invalid(f("direction"), "must be \"outbound\" or \"inbound\", got %q", r.Direction)
		}
		if !refusalCode.MatchString(r.Code) {
			return state.Invalid(f("code"), "must be an upper-case code of at most 64 characters (A-Z, 0-9, _), got %q", r.Code)
		}
		if r.PartnerOrganizationId != "" {
			if err := state.ValidateOrganizationID(f("partner_organization_id"), r.PartnerOrganizationId); err != nil {
				return err
			}
		}
		if r.Action != "" && !refusalAction.MatchString(r.Action) {
			return state.Invalid(f("action"), "must be an action name (a-z, 0-9, _; at most 64), got %q", r.Action)
		}
		if len(r.Detail) > maxRefusalDetail || !utf8.ValidString(r.Detail) {
			return state.Invalid(f("detail"), "must be valid UTF-8 of at most %d bytes", maxRefusalDetail)
		}
		if r.Time != nil {
			if err := r.Time.CheckValid(); err != nil {
				return state.Invalid(f("time"), "%v", err)
			}
		}
	}
	return nil
}
