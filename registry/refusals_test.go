package registry

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A refusal report is checked field by field, each error naming its field.
func TestValidateRefusalsNamesTheField(t *testing.T) {
	ok := func() *trustfedv1.AuditGatewayRefusal {
		return &trustfedv1.AuditGatewayRefusal{Direction: "inbound", Code: "CONTROLS", PartnerOrganizationId: "globex", Action: "task_send", Detail: "blocked SSN"}
	}
	require.NoError(t, validateRefusals(&trustfedv1.ReportRefusalsRequest{OrganizationId: "acme", Refusals: []*trustfedv1.AuditGatewayRefusal{ok()}}))
	many := make([]*trustfedv1.AuditGatewayRefusal, maxRefusalsPerReport+1)
	for i := range many {
		many[i] = ok()
	}
	for field, req := range map[string]*trustfedv1.ReportRefusalsRequest{
		"organization_id":                     {OrganizationId: "Not An Id", Refusals: []*trustfedv1.AuditGatewayRefusal{ok()}},
		"refusals":                            {OrganizationId: "acme"},
		"refusals ":                           {OrganizationId: "acme", Refusals: many},
		"refusals[0].direction":               {OrganizationId: "acme", Refusals: []*trustfedv1.AuditGatewayRefusal{{Direction: "sideways", Code: "X"}}},
		"refusals[0].code":                    {OrganizationId: "acme", Refusals: []*trustfedv1.AuditGatewayRefusal{{Direction: "inbound", Code: "lower"}}},
		"refusals[0].partner_organization_id": {OrganizationId: "acme", Refusals: []*trustfedv1.AuditGatewayRefusal{{Direction: "inbound", Code: "X", PartnerOrganizationId: "A B"}}},
		"refusals[0].action":                  {OrganizationId: "acme", Refusals: []*trustfedv1.AuditGatewayRefusal{{Direction: "inbound", Code: "X", Action: "Drop Table"}}},
		"refusals[0].detail":                  {OrganizationId: "acme", Refusals: []*trustfedv1.AuditGatewayRefusal{{Direction: "inbound", Code: "X", Detail: strings.Repeat("x", maxRefusalDetail+1)}}},
	} {
		err := validateRefusals(req)
		require.Error(t, err, field)
		require.Equal(t, codes.InvalidArgument, status.Code(toStatus(slog.Default(), "test", err)), "%s: %v", field, err)
		require.Contains(t, err.Error(), strings.TrimSpace(field))
	}
}
