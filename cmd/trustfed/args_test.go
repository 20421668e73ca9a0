package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func requireUsageError(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	var ue usageError
	require.True(t, errors.As(err, &ue), "want a usage error, got %v", err)
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		in      string
		want    uint32
		wantErr bool
	}{
		{"0", 0, false},
		{"4", 4, false},
		{" 2 ", 2, false},
		{"trusted", 3, false},
		{"PRIVILEGED", 4, false},
		{"Untrusted", 0, false},
		{"5", 0, true},
		{"-1", 0, true},
		{"", 0, true},
		{"high", 0, true},
		{"99999999999", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseLevel(tt.in)
			if tt.wantErr {
				requireUsageError(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestValidateOrgID(t *testing.T) {
	for _, ok := range []string{"acme", "a1", "acme-corp", "a" + strings.Repeat("b", 62)} {
		require.NoError(t, validateOrgID("id", ok), ok)
	}
	for _, bad := range []string{"", "a", "Acme", "1acme", "-acme", "acme_corp", "acme corp", "a" + strings.Repeat("b", 63)} {
		requireUsageError(t, validateOrgID("id", bad))
	}
}

func TestRequestBuilders(t *testing.T) {
	upd, err := orgSetLevelChange("acme", "0", "")
	require.NoError(t, err)
	require.Equal(t, "acme", upd.GetSetDeclaredLevel().GetOrganizationId())
	require.Equal(t, uint32(0), upd.GetSetDeclaredLevel().GetLevel())
	require.Equal(t, "set declared level of acme to 0 (UNTRUSTED)", upd.GetReason())
	upd, err = orgSetLevelChange("acme", "4", "audit passed")
	require.NoError(t, err)
	require.Equal(t, "audit passed", upd.GetReason())
	_, err = orgSetLevelChange("acme", "x", "")
	requireUsageError(t, err)
	_, err = orgSetLevelChange("acme", "1", " ")
	requireUsageError(t, err)

	chk, err := checkRequest("acme", "globex", "task_send", true)
	require.NoError(t, err)
	require.Equal(t, trustfedv1.Consistency_CONSISTENCY_STALE, chk.GetConsistency())
	_, err = checkRequest("acme", "globex", " ", false)
	requireUsageError(t, err)
	_, err = checkRequest("", "globex", "ping", false)
	requireUsageError(t, err)
}

func TestIssueNodeOptions(t *testing.T) {
	o := issueNodeOptions{dir: "d", nodeID: "n1", hosts: []string{"10.0.0.1"}, validity: 1}
	require.NoError(t, o.validate())
	require.Equal(t, "d/n1.pem", o.outCert)
	require.Equal(t, "d/n1-key.pem", o.outKey)

	tests := []issueNodeOptions{
		{nodeID: "n1", hosts: []string{"h"}, validity: 1},
		{dir: "d", nodeID: "N1", hosts: []string{"h"}, validity: 1},
		{dir: "d", nodeID: "n1", validity: 1},
		{dir: "d", nodeID: "n1", hosts: []string{"h:1"}, validity: 1},
		{dir: "d", nodeID: "n1", hosts: []string{"h"}},
		{dir: "d", nodeID: "n1", hosts: []string{"h"}, validity: 1, outCert: "x", outKey: "x"},
	}
	for _, o := range tests {
		requireUsageError(t, o.validate())
	}
}

func TestCollectPages(t *testing.T) {
	var got []string
	pages := map[string]string{"": "p2", "p2": "p3", "p3": ""}
	require.NoError(t, collectPages(func(tok string) (string, error) {
		got = append(got, tok)
		return pages[tok], nil
	}))
	require.Equal(t, []string{"", "p2", "p3"}, got)

	loop := map[string]string{"": "a", "a": "b", "b": "a"}
	require.ErrorContains(t, collectPages(func(tok string) (string, error) { return loop[tok], nil }), "repeated")
}

func TestCheckExit(t *testing.T) {
	require.NoError(t, checkExit(trustfedv1.Decision_DECISION_ALLOW))
	var ce *codeError
	require.True(t, errors.As(checkExit(trustfedv1.Decision_DECISION_DENY), &ce))
	require.Equal(t, exitDeny, ce.code)
	require.Error(t, checkExit(trustfedv1.Decision_DECISION_UNSPECIFIED))
}
