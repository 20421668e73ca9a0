package state

import (
	"testing"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// The labels add gives an entry are those it always gave: LabelOrg+id per
// organisation, LabelType+type, LabelMode+ModeName per view, in that
// order, for known and unknown types and modes alike.
func TestAuditLabelsUnchanged(t *testing.T) {
	want := func(orgs []string, typ string, modes []trustfedv1.ComplianceMode) []string {
		var out []string
		for _, o := range orgs {
			out = append(out, LabelOrg+o)
		}
		out = append(out, LabelType+typ)
		for _, m := range modes {
			out = append(out, LabelMode+ModeName(m))
		}
		return out
	}
	modes := []trustfedv1.ComplianceMode{trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA, trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2,
		trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR, trustfedv1.ComplianceMode_COMPLIANCE_MODE_UNSPECIFIED, trustfedv1.ComplianceMode(99)}
	types := []string{AuditDecision, AuditAuthFailure, AuditCascade, CommandName(commandv1.CommandType_COMMAND_TYPE_APPEND_AUDIT), "NOT_A_TYPE", ""}
	for _, orgs := range [][]string{nil, {"acme"}, {"acme", "globex"}, {"", "b", "a-much-longer-organization-id"}} {
		for _, typ := range types {
			for n := 0; n <= len(modes); n++ {
				labels := make([]string, 0, len(orgs)+1+n)
				labels = appendOrgLabels(labels, orgs)
				labels = append(labels, typeLabel(typ))
				for _, m := range modes[:n] {
					labels = append(labels, modeLabel(m))
				}
				require.Equal(t, want(orgs, typ, modes[:n]), labels, "%q %q %d", orgs, typ, n)
			}
		}
	}
}

// appendSortedPair(nil, a, b) is sortedKeys of the set {a, b}.
func TestSortedPair(t *testing.T) {
	for _, c := range [][2]string{{"", ""}, {"a", ""}, {"", "a"}, {"a", "a"}, {"a", "b"}, {"b", "a"}, {"acme", "acme-2"}, {"b-x", "b"}} {
		want := sortedKeys(map[string]struct{}{c[0]: {}, c[1]: {}})
		require.ElementsMatch(t, want, appendSortedPair(nil, c[0], c[1]), "%q", c)
		require.Equal(t, want, append([]string{}, appendSortedPair(make([]string, 0, 2), c[0], c[1])...), "%q", c)
	}
}
