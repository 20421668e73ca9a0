package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const auditCmdOrigin = "trustfed.test/audit"

var auditCmdT0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// auditCmdKey writes an organisation key pair and returns the files.
func auditCmdKey(t *testing.T, dir, org string) (keyFile, pubFile string, pub ed25519.PublicKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	keyFile = filepath.Join(dir, org+".key")
	require.NoError(t, attestation.SavePrivateKey(keyFile, key))
	pemBytes, err := attestation.MarshalPublicKeyPEM(pub)
	require.NoError(t, err)
	pubFile = keyFile + ".pub"
	require.NoError(t, os.WriteFile(pubFile, pemBytes, 0o644))
	return keyFile, pubFile, pub
}

func auditCmdDecision(t *testing.T, d trustfedv1.Decision, action string) *trustfedv1.AuditEntry {
	t.Helper()
	st, err := proto.Marshal(&trustfedv1.DecisionStatement{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: action, Decision: d})
	require.NoError(t, err)
	return &trustfedv1.AuditEntry{Type: "DECISION", OrganizationIds: []string{"acme", "globex"}, Principal: "acme/agent-1",
		Decision: &trustfedv1.AuditDecision{Statement: st, KeyId: "SHA256:k1", NodeId: "n1"}}
}

func auditCmdLog(t *testing.T, n int) []*trustfedv1.AuditEntry {
	t.Helper()
	out := []*trustfedv1.AuditEntry{
		{Type: "REGISTER_ORGANIZATION", OrganizationIds: []string{"acme"}, Principal: "admin"},
		auditCmdDecision(t, trustfedv1.Decision_DECISION_ALLOW, "task_send"),
		{Type: "LEVEL_CHANGE", OrganizationIds: []string{"acme"}, LevelChange: &trustfedv1.AuditLevelChange{OrganizationId: "acme", FromLevel: 1, ToLevel: 3}},
	}
	for len(out) < n {
		out = append(out, &trustfedv1.AuditEntry{Type: "UPDATE_ORGANIZATION", OrganizationIds: []string{"globex"}, Principal: "admin"})
	}
	return out
}

func TestAuditCmdUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad compliance", []string{"audit", "entries", "--compliance", "pci"}, "--compliance"},
		{"bad since", []string{"audit", "entries", "--since", "yesterday"}, "--since"},
		{"bad until", []string{"audit", "entries", "--until", "2026-13-01T00:00:00Z"}, "--until"},
		{"since after until", []string{"audit", "entries", "--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}, "--until"},
		{"since equals until", []string{"audit", "entries", "--since", "2026-01-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}, "must be after --since"},
		{"zero limit", []string{"audit", "entries", "--limit", "0"}, "--limit"},
		{"bad type", []string{"audit", "entries", "--type", "no spaces"}, "--type"},
		{"bad org", []string{"audit", "entries", "--org", "Acme"}, "--org"},
		{"trust without proofs", []string{"audit", "entries", "--witness", "acme=a.pub"}, "--witness applies only with --proofs"},
		{"witness without file", []string{"audit", "sth", "--witness", "acme"}, "ORG=PUBKEYFILE"},
		{"bad witness org", []string{"audit", "sth", "--witness", "Acme=x.pub"}, "--witness"},
		{"need without witnesses", []string{"audit", "sth", "--need", "1"}, "--need"},
		{"bad registry key", []string{"audit", "sth", "--registry-key", "nonsense"}, "--registry-key"},
		{"bad seq", []string{"audit", "proof", "x"}, "SEQ"},
		{"tree size too small", []string{"audit", "proof", "5", "--tree-size", "5"}, "--tree-size"},
		{"proof without seq", []string{"audit", "proof"}, "expects 1 argument"},
		{"witness without org", []string{"audit", "witness", "--org-key", "k"}, `"org" not set`},
		{"witness too often", []string{"audit", "witness", "--org", "acme", "--org-key", "k", "--every", "10ms"}, "--every"},
		{"unknown audit command", []string{"audit", "frobnicate"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(nil, tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tt.want)
		})
	}
}

func TestAuditCmdTransientErrors(t *testing.T) {
	require.True(t, transientAuditError(fmt.Errorf("witness acme: %w", status.Error(codes.Unavailable, "leader lost"))))
	require.False(t, transientAuditError(status.Error(codes.PermissionDenied, "not a member")))
	require.False(t, transientAuditError(fmt.Errorf("witness acme: %w", client.ErrAuditProof)))
}

func TestAuditCmdGroupHelp(t *testing.T) {
	code, stdout, _ := runCLI(nil, "audit")
	require.Equal(t, exitOK, code)
	for _, verb := range []string{"sth", "entries", "proof", "witness"} {
		require.Contains(t, stdout, verb)
	}
}

func TestAuditCmdEntriesTable(t *testing.T) {
	denied := auditCmdDecision(t, trustfedv1.Decision_DECISION_DENY, "data_share")
	recs := []*trustfedv1.AuditRecord{
		{Sequence: 0, Entry: auditCmdDecision(t, trustfedv1.Decision_DECISION_ALLOW, "task_send")},
		{Sequence: 1, Entry: denied},
		{Sequence: 2, Entry: &trustfedv1.AuditEntry{Type: "APPROVE_ORGANIZATION", Principal: "admin", OrganizationIds: []string{"acme"}, Error: "organization \"acme\" is not pending\n"}},
		{Sequence: 3, Entry: &trustfedv1.AuditEntry{Type: "LEVEL_CHANGE", OrganizationIds: []string{"acme"}, LevelChange: &trustfedv1.AuditLevelChange{OrganizationId: "acme", FromLevel: 3, ToLevel: 1}}},
		{Sequence: 4, Entry: &trustfedv1.AuditEntry{Type: "CASCADE", OrganizationIds: []string{"acme", "globex"}, CascadeId: "evt-00000000000000aa",
			CascadeEvent: &trustfedv1.Event{Id: "evt-00000000000000aa", Kind: trustfedv1.EventKind_EVENT_KIND_REVOCATION, OrganizationId: "acme", Reason: "key compromised"}}},
		{Sequence: 5, Entry: &trustfedv1.AuditEntry{Type: "AUTH_FAILURE", AuthFailure: &trustfedv1.AuditAuthFailure{Method: "/trustfed.v1.AdminService/ApproveOrganization", Code: "PermissionDenied"}}},
		{Sequence: 6, Entry: &trustfedv1.AuditEntry{Type: "UPDATE_ORGANIZATION", Time: timestamppb.New(auditCmdT0), OrganizationIds: []string{"globex"}, Principal: "admin"}},
		{Sequence: 7, Entry: &trustfedv1.AuditEntry{Type: "DECISION", Decision: &trustfedv1.AuditDecision{Statement: []byte{0xff}}}},
	}
	var b strings.Builder
	require.NoError(t, writeAuditEntries(&b, recs))
	lines := strings.Split(squeeze(b.String()), "\n")
	require.Equal(t, "SEQ TIME TYPE ORGANIZATIONS PRINCIPAL SUMMARY", lines[0])
	require.Equal(t, "0 - DECISION acme,globex acme/agent-1 allow task_send acme->globex", lines[1])
	require.Equal(t, "1 - DECISION acme,globex acme/agent-1 deny data_share acme->globex", lines[2])
	require.Equal(t, `2 - APPROVE_ORGANIZATION acme admin refused: organization "acme" is not pending `, lines[3], "control characters cleaned")
	require.Equal(t, "3 - LEVEL_CHANGE acme - acme: 3 (TRUSTED) -> 1 (VERIFIED)", lines[4])
	require.Equal(t, "4 - CASCADE acme,globex - cascade evt-00000000000000aa: REVOCATION of acme (key compromised)", lines[5])
	require.Equal(t, "5 - AUTH_FAILURE - - PermissionDenied /trustfed.v1.AdminService/ApproveOrganization", lines[6])
	require.Equal(t, "6 2026-11-23T12:00:00Z UPDATE_ORGANIZATION globex admin -", lines[7])
	require.Equal(t, "7 - DECISION - - decision (statement does not decode)", lines[8])

	long := auditSummary(&trustfedv1.AuditEntry{Type: "X", Error: strings.Repeat("é", 300)})
	require.Len(t, []rune(long), maxAuditSummary)
	require.True(t, strings.HasSuffix(long, "…"))
}

func TestAuditCmdAgainstServer(t *testing.T) {
	dir := t.TempDir()
	acmeKey, acmePub, _ := auditCmdKey(t, dir, "acme")
	f := newAuditFake(t, auditCmdOrigin, auditCmdT0)
	env := startAuditFake(t, f)
	f.serve(t, auditCmdLog(t, 5)...)
	state := filepath.Join(dir, "witness.json")

	t.Run("witness", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "audit", "witness", "--org", "acme", "--org-key", acmeKey, "--state", state)
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stdout, "acme cosigned "+auditCmdOrigin+" at 5 entries")
		var st witnessState
		data, err := os.ReadFile(state)
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &st))
		require.Equal(t, uint64(5), st.Size)

		// The log grows consistently: cosigned again.
		f.serve(t, auditCmdLog(t, 9)...)
		code, stdout, stderr = runCLI(env, "-o", "json", "audit", "witness", "--org", "acme", "--org-key", acmeKey, "--state", state, "--registry-key", f.vkey(t))
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stdout, `"size": 9`)
		require.Equal(t, 2, f.submitted)
	})

	t.Run("sth", func(t *testing.T) {
		save := filepath.Join(dir, "sth.json")
		code, stdout, stderr := runCLI(env, "audit", "sth", "--witness", "acme="+acmePub, "--save", save)
		require.Equal(t, exitOK, code, stderr)
		out := squeeze(stdout)
		require.Contains(t, out, "Origin: "+auditCmdOrigin+"\n")
		require.Contains(t, out, "Tree size: 9\n")
		require.Contains(t, out, "Verifier key: "+f.vkey(t)+" (from GetKeys)\n")
		require.Contains(t, out, "Verified: registry signature; cosigned by 1 of 1 trusted witnesses (need 1): acme\n")
		var saved trustfedv1.GetSignedTreeHeadResponse
		data, err := os.ReadFile(save)
		require.NoError(t, err)
		require.NoError(t, protojson.Unmarshal(data, &saved))
		require.Equal(t, uint64(9), saved.TreeSize)

		// A pinned key that is not the registry's fails.
		otherPub, _, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		other, err := attestation.CheckpointVerifierKey(auditCmdOrigin, otherPub)
		require.NoError(t, err)
		code, _, stderr = runCLI(env, "audit", "sth", "--registry-key", other)
		require.Equal(t, exitError, code)
		require.Contains(t, stderr, "does not verify")
	})

	t.Run("entries with proofs", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "audit", "entries", "--proofs", "--limit", "3", "--registry-key", f.vkey(t))
		require.Equal(t, exitOK, code, stderr)
		out := squeeze(stdout)
		require.Contains(t, out, "1 2026-11-23T12:01:00Z DECISION acme,globex acme/agent-1 allow task_send acme->globex\n")
		require.Contains(t, out, "(more entries: raise --limit, now 3)")
		require.Contains(t, out, "Inclusion proofs: all 3 entries verified in the signed tree of 9 entries")

		code, stdout, stderr = runCLI(env, "-o", "json", "audit", "entries", "--org", "globex", "--limit", "4")
		require.Equal(t, exitOK, code, stderr)
		var got trustfedv1.ListAuditEntriesResponse
		require.NoError(t, protojson.Unmarshal([]byte(stdout), &got))
		require.Len(t, got.Records, 4)
		require.Equal(t, uint64(3), got.Records[1].Sequence)
	})

	t.Run("proof", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "audit", "proof", "2")
		require.Equal(t, exitOK, code, stderr)
		out := squeeze(stdout)
		require.Contains(t, out, "Verified: in the signed tree of 9 entries")
		require.Contains(t, out, "Summary: acme: 1 (VERIFIED) -> 3 (TRUSTED)\n")

		code, stdout, stderr = runCLI(env, "audit", "proof", "2", "--tree-size", "4")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Verified: in the tree of 4 entries, a prefix of the signed tree of 9 entries")

		code, _, stderr = runCLI(env, "audit", "proof", "20")
		require.Equal(t, exitError, code)
		require.Contains(t, stderr, "not in the signed tree")
	})

	t.Run("witness refuses a fork", func(t *testing.T) {
		forked := auditCmdLog(t, 12)
		forked[0].Principal = "someone else"
		f.serve(t, forked...)
		code, stdout, stderr := runCLI(env, "audit", "witness", "--org", "acme", "--org-key", acmeKey, "--state", state)
		require.Equal(t, exitError, code)
		require.Empty(t, stdout)
		require.Contains(t, stderr, "does not verify")
		require.Equal(t, 2, f.submitted, "nothing cosigned")
		data, err := os.ReadFile(state)
		require.NoError(t, err)
		require.Contains(t, string(data), `"size": 9`, "the state still holds the last good checkpoint")
	})
}
