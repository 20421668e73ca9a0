package main

import (
	"crypto/ed25519"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

func TestCLIMembershipUsageErrors(t *testing.T) {
	dir := t.TempDir()
	_, key := testKey(t, dir, "acme.key")
	passport := filepath.Join(dir, "acme.jwt")
	require.NoError(t, os.WriteFile(passport, []byte("a.b.c\n"), 0o644))
	reg := []string{"org", "register", "--id", "acme", "--name", "Acme", "--jurisdiction", "EU", "--key", key, "--passport", passport}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"org create is gone", []string{"org", "create", "acme"}, "unknown command"},
		{"agreement create is gone", []string{"agreement", "create", "acme", "globex"}, "unknown command"},
		{"register without level", reg, `"level" not set`},
		{"register bad level", append(reg, "--level", "9"), "out of range"},
		{"register bad jurisdiction", append(reg[:6:6], "--jurisdiction", "E U", "--level", "1", "--key", key, "--passport", passport), "jurisdiction"},
		{"register http endpoint", append(reg, "--level", "1", "--endpoint", "http://acme.example"), "https"},
		{"register bad id", []string{"org", "register", "--id", "Acme", "--name", "A", "--jurisdiction", "EU", "--level", "1", "--key", key, "--passport", passport}, "not a valid organisation id"},
		{"approve without id", []string{"org", "approve"}, "expects 1 argument"},
		{"override without reason", []string{"org", "override-onboarding", "acme"}, `"reason" not set`},
		{"override blank reason", []string{"org", "override-onboarding", "acme", "--reason", " "}, "--reason is empty"},
		{"suspend bad id", []string{"org", "suspend", "A", "--reason", "x"}, "not a valid organisation id"},
		{"passport without key", []string{"org", "passport", "acme", "--passport", passport}, `"key" not set`},
		{"propose without actions", []string{"agreement", "propose", "acme", "globex", "--valid", "1d"}, `"actions" not set`},
		{"propose without end", []string{"agreement", "propose", "acme", "globex", "--actions", "ping"}, "not-after"},
		{"propose with both ends", []string{"agreement", "propose", "acme", "globex", "--actions", "ping", "--valid", "1d", "--not-after", "2030-01-01T00:00:00Z"}, "not-after"},
		{"propose with self", []string{"agreement", "propose", "acme", "acme", "--actions", "ping", "--valid", "1d"}, "two different"},
		{"propose bad valid", []string{"agreement", "propose", "acme", "globex", "--actions", "ping", "--valid", "1y"}, "--valid"},
		{"sign bad id", []string{"agreement", "sign", "agr-1", "--org", "acme", "--key", key}, "not valid"},
		{"sign without org", []string{"agreement", "sign", "agr-0123456789abcdef", "--key", key}, `"org" not set`},
		{"terminate without reason", []string{"agreement", "terminate", "agr-0123456789abcdef", "--org", "acme", "--key", key}, `"reason" not set`},
		{"get bad id", []string{"agreement", "get", "x"}, "not valid"},
		{"policy set nothing", []string{"federation", "policy", "set"}, "nothing to change"},
		{"policy set bad cap", []string{"federation", "policy", "set", "--onboarding-cap", "7"}, "out of range"},
		{"policy set bad period", []string{"federation", "policy", "set", "--onboarding-period", "a month"}, "--onboarding-period"},
		{"accredit without max level", []string{"issuer", "accredit", "eu", "--name", "EU", "--pubkey", key + ".pub"}, `"max-level" not set`},
		{"accredit bad id", []string{"issuer", "accredit", "EU", "--name", "EU", "--pubkey", key + ".pub", "--max-level", "4"}, "issuer id"},
		{"withdraw blank reason", []string{"issuer", "withdraw", "eu-assessors", "--reason", ""}, "--reason is empty"},
		{"revoke bad serial", []string{"passport", "revoke", "a b", "--reason", "r"}, "serial"},
		{"revoke without reason", []string{"passport", "revoke", "s1"}, `"reason" not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runFullCLI(nil, tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Empty(t, stdout)
			require.True(t, strings.HasPrefix(stderr, "error: "), stderr)
			require.Contains(t, stderr, tt.want)
		})
	}
}

func TestCLIMembershipAgainstServer(t *testing.T) {
	fake, addr, caFile := startCLIFake(t)
	env := map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": caFile, "TRUSTFED_TOKEN": "tf_env_token"}
	dir := t.TempDir()
	acmeKey, acmeKeyFile := testKey(t, dir, "acme.key")
	globexKey, globexKeyFile := testKey(t, dir, "globex.key")
	_, issuerKeyFile := testKey(t, dir, "issuer.key")
	_, adminKeyFile := testKey(t, dir, "admin.key")
	passport := filepath.Join(dir, "p.jwt")
	require.NoError(t, os.WriteFile(passport, []byte("h.p.s\n"), 0o644))

	t.Run("register signs the registration", func(t *testing.T) {
		for _, org := range []struct{ id, name, key string }{{"acme", "Acme", acmeKeyFile}, {"globex", "Globex", globexKeyFile}} {
			code, stdout, stderr := runCLI(env, "org", "register", "--id", org.id, "--name", org.name, "--jurisdiction", "EU",
				"--level", "3", "--key", org.key, "--passport", passport, "--endpoint", "https://"+org.id+".example/notify")
			require.Equal(t, exitOK, code, stderr)
			require.Contains(t, squeeze(stdout), "Status: PENDING\n")
			require.Contains(t, squeeze(stdout), "Key fingerprint: SHA256:")
		}
		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.Len(t, fake.member.registered, 2)
		got := fake.member.registered[0]
		require.Equal(t, []byte(acmeKey.Public().(ed25519.PublicKey)), got.GetPublicKey())
		require.Equal(t, "h.p.s", got.GetPassport())
		require.Equal(t, []string{"https://acme.example/notify"}, got.GetNotificationEndpoints())
		require.True(t, proto.Equal(defaultControlProfile(), got.GetControlProfile()))
	})
	t.Run("register with a profile file, json output", func(t *testing.T) {
		_, key := testKey(t, dir, "initech.key")
		profile := filepath.Join(dir, "profile.json")
		require.NoError(t, os.WriteFile(profile, []byte(`{"logging":{"detail":"LOG_DETAIL_FULL","auditRetentionYears":10}}`), 0o644))
		code, stdout, stderr := runCLI(env, "-o", "json", "org", "register", "--id", "initech", "--name", "Initech", "--jurisdiction", "US-NY",
			"--level", "1", "--key", key, "--passport", passport, "--profile", profile)
		require.Equal(t, exitOK, code, stderr)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &got))
		org := got["organization"].(map[string]any)
		require.Equal(t, "ORGANIZATION_STATUS_PENDING", org["status"])
		require.Equal(t, "LOG_DETAIL_FULL", org["controlProfile"].(map[string]any)["logging"].(map[string]any)["detail"])
	})
	t.Run("register with a bad signature key is the server's error", func(t *testing.T) {
		code, _, stderr := runCLI(env, "org", "register", "--id", "acme", "--name", "Acme", "--jurisdiction", "EU",
			"--level", "3", "--key", filepath.Join(dir, "missing.key"), "--passport", passport)
		require.Equal(t, exitError, code)
		require.Contains(t, stderr, "load private key")
	})
	t.Run("approve, override, suspend, passport", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "org", "approve", "acme")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stdout, "ACTIVE")
		env := maps.Clone(env)
		env["TRUSTFED_ADMIN_KEY"] = adminKeyFile
		code, stdout, stderr = runCLI(env, "org", "override-onboarding", "acme", "--reason", "known partner")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "What: lift the onboarding cap of acme\n")
		require.Contains(t, squeeze(stdout), "Reason: known partner\n")
		require.Contains(t, squeeze(stdout), "Status: APPLIED\n")
		require.Contains(t, squeeze(stdout), "ID: acme\n", "the changed organisation follows the change")
		code, _, stderr = runCLI(env, "org", "suspend", "globex")
		require.Equal(t, exitUsage, code, "suspension needs a reason")
		require.Contains(t, stderr, "reason")
		code, stdout, stderr = runCLI(env, "org", "suspend", "globex", "--reason", "key compromised")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "What: set status of globex to SUSPENDED\n")
		require.Contains(t, stdout, "Cascade evt-00000000000000aa notifies 1 partner(s): trustfed revocation status evt-00000000000000aa")
		code, stdout, stderr = runCLI(env, "org", "passport", "acme", "--key", acmeKeyFile, "--passport", passport)
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Passport history: p-1")
		code, _, stderr = runCLI(env, "org", "passport", "acme", "--key", globexKeyFile, "--passport", passport)
		require.Equal(t, exitError, code, "signed with another organisation's key")
		require.Contains(t, stderr, "code InvalidArgument")

		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.Equal(t, "acme", fake.member.approvals[0].GetOrganizationId())
		require.Len(t, fake.member.approvals[0].GetRequestId(), 32)
		n := len(fake.member.changes)
		require.Equal(t, "acme", fake.member.changes[n-2].GetOverrideOnboarding().GetOrganizationId())
		require.Equal(t, "known partner", fake.member.changes[n-2].GetReason())
		require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED, fake.member.changes[n-1].GetSetOrganizationStatus().GetStatus())
		require.Len(t, fake.member.passports, 1)
	})

	t.Run("propose retried with the same request and terms", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "agreement", "propose", "acme", "globex", "--actions", "task_send,ping",
			"--data-categories", "payments", "--valid", "365d", "--min-level", "2")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "ID: "+fakeAgreementID+"\n")
		require.Contains(t, squeeze(stdout), "Status: PENDING\n")
		fake.mu.Lock()
		defer fake.mu.Unlock()
		p := fake.member.proposals
		require.Len(t, p, 2)
		require.NotEmpty(t, p[0].GetRequestId())
		require.True(t, proto.Equal(p[0], p[1]), "the retry sends the same request, not_before included")
		require.NotNil(t, p[0].GetNotBefore())
		require.Zero(t, p[0].GetNotBefore().GetNanos())
		require.WithinDuration(t, time.Now(), p[0].GetNotBefore().AsTime(), time.Minute)
		require.Equal(t, 365*day, p[0].GetNotAfter().AsTime().Sub(p[0].GetNotBefore().AsTime()))
		require.Equal(t, uint32(2), p[0].GetTermination().GetMinLevel())
		require.True(t, p[0].GetTermination().GetOnPassportExpiry())
	})
	t.Run("sign by both parties", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "agreement", "sign", fakeAgreementID, "--org", "acme", "--key", acmeKeyFile)
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stderr, "signing as acme: "+fakeAgreementID+" between acme and globex: actions task_send,ping; data payments; valid ")
		require.Contains(t, squeeze(stdout), "Status: PENDING\n")
		require.Contains(t, squeeze(stdout), "Signed by globex: not yet\n")

		code, _, stderr = runCLI(env, "agreement", "sign", fakeAgreementID, "--org", "globex", "--key", acmeKeyFile)
		require.Equal(t, exitError, code, "wrong key for the party")
		require.Contains(t, stderr, "signature")

		code, _, stderr = runCLI(env, "agreement", "sign", fakeAgreementID, "--org", "initech", "--key", acmeKeyFile)
		require.Equal(t, exitUsage, code, "not a party")
		require.Contains(t, stderr, "not a party")

		code, stdout, stderr = runCLI(env, "-o", "json", "agreement", "sign", fakeAgreementID, "--org", "globex", "--key", globexKeyFile)
		require.Equal(t, exitOK, code, stderr)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), "the terms summary is not on stdout")
		require.Equal(t, "AGREEMENT_STATUS_ACTIVE", got["agreement"].(map[string]any)["status"])

		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.Len(t, fake.member.signs, 2)
		terms := fake.member.agreement.GetTerms()
		require.NoError(t, attestation.Verify(acmeKey.Public().(ed25519.PublicKey), attestation.PurposeAgreement, terms, fake.member.signs[0].GetSignature()))
		require.NoError(t, attestation.Verify(globexKey.Public().(ed25519.PublicKey), attestation.PurposeAgreement, terms, fake.member.signs[1].GetSignature()))
	})
	t.Run("get and terminate", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "agreement", "get", fakeAgreementID)
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Actions: task_send, ping\n")
		require.Contains(t, stdout, "level below 2 (ATTESTED)")
		require.Contains(t, squeeze(stdout), "Raft index: 11\n")

		code, stdout, stderr = runCLI(env, "agreement", "terminate", fakeAgreementID, "--org", "globex", "--key", globexKeyFile, "--reason", "project ended")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Status: TERMINATED\n")
		require.Contains(t, squeeze(stdout), "Termination reason: project ended\n")
		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.True(t, proto.Equal(&trustfedv1.AgreementTermination{AgreementId: fakeAgreementID, OrganizationId: "globex", Reason: "project ended"},
			fake.member.terminations[0]))
	})

	t.Run("federation policy", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "federation", "policy", "get")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Onboarding cap level: 2 (ATTESTED)\n")
		require.Contains(t, squeeze(stdout), "Onboarding period: 720h0m0s (30d)\n")
		code, stdout, stderr = runCLI(env, "--admin-key", adminKeyFile, "federation", "policy", "set", "--onboarding-cap", "4")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Onboarding cap level: 4 (PRIVILEGED)\n")
		code, stdout, stderr = runCLI(env, "--admin-key", adminKeyFile, "-o", "json", "federation", "policy", "set", "--onboarding-period", "0d")
		require.Equal(t, exitOK, code, stderr)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &got))
		require.Equal(t, "ADMIN_CHANGE_STATUS_APPLIED", got["status"])
		require.Equal(t, "0s", got["content"].(map[string]any)["updateFederationPolicy"].(map[string]any)["onboardingPeriod"])
		fake.mu.Lock()
		defer fake.mu.Unlock()
		n := len(fake.member.changes)
		sets := []*trustfedv1.FederationPolicyChange{fake.member.changes[n-2].GetUpdateFederationPolicy(), fake.member.changes[n-1].GetUpdateFederationPolicy()}
		require.Nil(t, sets[0].OnboardingPeriod)
		require.Nil(t, sets[1].OnboardingCapLevel)
		require.NotNil(t, sets[1].OnboardingPeriod)
	})

	t.Run("issuers and passport revocation", func(t *testing.T) {
		env := maps.Clone(env)
		env["TRUSTFED_ADMIN_KEY"] = adminKeyFile
		code, stdout, stderr := runFullCLI(env, "issuer", "accredit", "eu-assessors", "--name", "EU Assessors", "--pubkey", issuerKeyFile+".pub", "--max-level", "4")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "Status: ACCREDITED\n")
		require.Contains(t, squeeze(stdout), "Max level: 4 (PRIVILEGED)\n")

		code, _, stderr = runFullCLI(env, "issuer", "accredit", "eu-assessors", "--name", "EU Assessors", "--pubkey", issuerKeyFile, "--max-level", "4")
		require.Equal(t, exitError, code, "a private key file is refused locally")
		require.Contains(t, stderr, "parse public key")

		code, stdout, stderr = runFullCLI(env, "issuer", "list")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stdout, "eu-assessors  EU Assessors  4 (PRIVILEGED)  ACCREDITED")

		code, stdout, stderr = runFullCLI(env, "--token", "tf_flag_token", "issuer", "get", "eu-assessors")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stdout, "Raft index:")
		code, _, stderr = runFullCLI(env, "issuer", "get", "nobody")
		require.Equal(t, exitError, code)
		require.Equal(t, "error: issuer \"nobody\" does not exist (code NotFound)\n", stderr)

		code, stdout, stderr = runFullCLI(env, "issuer", "withdraw", "eu-assessors", "--reason", "lost accreditation")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "What: withdraw issuer eu-assessors\n")

		code, stdout, stderr = runFullCLI(env, "passport", "revoke", "p-1", "--reason", "assessment withdrawn")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), "What: revoke passport p-1\n")
		code, stdout, stderr = runFullCLI(env, "-o", "json", "passport", "revoke", "p-2", "--reason", "assessment withdrawn")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, squeeze(stdout), `"serial": "p-2"`)

		fake.mu.Lock()
		defer fake.mu.Unlock()
		var accredits, withdrawals, revocations []*trustfedv1.AdminChange
		for _, c := range fake.member.changes {
			switch {
			case c.GetAccreditIssuer() != nil:
				accredits = append(accredits, c)
			case c.GetWithdrawIssuer() != nil:
				withdrawals = append(withdrawals, c)
			case c.GetRevokePassport() != nil:
				revocations = append(revocations, c)
			}
		}
		require.Equal(t, uint32(4), accredits[0].GetAccreditIssuer().GetMaxLevel())
		require.Len(t, accredits[0].GetAccreditIssuer().GetPublicKey(), ed25519.PublicKeySize)
		require.Equal(t, "lost accreditation", withdrawals[0].GetReason())
		require.Len(t, revocations, 2)
		require.Contains(t, fake.auth, "Bearer tf_flag_token", "global flags reach the commands built without the app")
	})
}

// squeeze collapses runs of spaces, so that assertions on tables do not
// depend on column widths.
func squeeze(s string) string {
	return spaces.ReplaceAllString(s, " ")
}

var spaces = regexp.MustCompile(` {2,}`)
