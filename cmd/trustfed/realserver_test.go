package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
)

// realServer is an in-process dev server and the CLI's environment to reach
// it as its bootstrap admin (token, CA, dev admin key).
type realServer struct {
	*testserver.Dev
	env map[string]string
	dir string // keys, passports and other files of the test
}

func startRealServer(t *testing.T) *realServer {
	t.Helper()
	d := testserver.StartDev(t)
	env := d.Env()
	env["TRUSTFED_TOKEN_FILE"] = ""
	return &realServer{Dev: d, env: env, dir: t.TempDir()}
}

// run runs the CLI against the server and requires exit code want.
func (s *realServer) run(t *testing.T, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	code, stdout, stderr := runCLI(s.env, args...)
	require.Equal(t, want, code, "trustfed %v\nstdout: %s\nstderr: %s", args, stdout, stderr)
	return stdout, stderr
}

func (s *realServer) path(name string) string { return filepath.Join(s.dir, name) }

// onboard makes an organisation the way an operator does: its key, a
// passport from the accredited issuer "assessor", registration, approval
// and (to lift the onboarding cap) an override.
func (s *realServer) onboard(t *testing.T, org string) {
	t.Helper()
	s.run(t, exitOK, "keygen", "--out", s.path(org+".key"))
	s.run(t, exitOK, "issuer", "passport", "issue", "--issuer-key", s.path("assessor.key"), "--issuer-id", "assessor", "--org-id", org,
		"--org-pubkey", s.path(org+".key.pub"), "--level", "3", "--jurisdiction", "EU", "--out", s.path(org+".jwt"))
	out, _ := s.run(t, exitOK, "org", "register", "--id", org, "--name", "Org "+org, "--jurisdiction", "EU", "--level", "3",
		"--org-key", s.path(org+".key"), "--passport", s.path(org+".jwt"), "--endpoint", "https://"+org+".example/notify")
	require.Contains(t, squeeze(out), "Status: PENDING\n")
	require.Contains(t, squeeze(out), "Key fingerprint: SHA256:")
	out, _ = s.run(t, exitOK, "org", "approve", org)
	require.Contains(t, out, "ACTIVE")
}

// federation accredits the issuer "assessor" and onboards orgs.
func (s *realServer) federation(t *testing.T, orgs ...string) {
	t.Helper()
	s.run(t, exitOK, "keygen", "--out", s.path("assessor.key"))
	out, _ := s.run(t, exitOK, "issuer", "accredit", "assessor", "--name", "Assessor", "--pubkey", s.path("assessor.key.pub"), "--max-level", "4")
	require.Contains(t, squeeze(out), "Status: ACCREDITED\n")
	require.Contains(t, squeeze(out), "Max level: 4 (PRIVILEGED)\n")
	for _, org := range orgs {
		s.onboard(t, org)
	}
}

// The membership verbs against a real server: every signature the CLI
// makes (registration, passport, agreement terms, termination, admin
// changes) is checked by the registry itself, and a wrong key is refused.
func TestCLIMembershipAgainstRealServer(t *testing.T) {
	s := startRealServer(t)
	s.federation(t, "acme", "globex")

	t.Run("register with a missing key is refused before the server", func(t *testing.T) {
		_, stderr := s.run(t, exitError, "org", "register", "--id", "initech", "--name", "Initech", "--jurisdiction", "EU",
			"--level", "3", "--org-key", s.path("missing.key"), "--passport", s.path("acme.jwt"))
		require.Contains(t, stderr, "load private key")
	})
	t.Run("register with another organisation's passport is the server's error", func(t *testing.T) {
		s.run(t, exitOK, "keygen", "--out", s.path("initech.key"))
		_, stderr := s.run(t, exitError, "org", "register", "--id", "initech", "--name", "Initech", "--jurisdiction", "EU",
			"--level", "3", "--org-key", s.path("initech.key"), "--passport", s.path("acme.jwt"))
		require.Contains(t, stderr, "code InvalidArgument")
	})
	t.Run("override, suspend, passport", func(t *testing.T) {
		out, _ := s.run(t, exitOK, "org", "override-onboarding", "acme", "--reason", "known partner")
		require.Contains(t, squeeze(out), "What: lift the onboarding cap of acme\n")
		require.Contains(t, squeeze(out), "Reason: known partner\n")
		require.Contains(t, squeeze(out), "Status: APPLIED\n")
		require.Contains(t, squeeze(out), "ID: acme\n", "the changed organisation follows the change")
		s.run(t, exitOK, "issuer", "passport", "issue", "--issuer-key", s.path("assessor.key"), "--issuer-id", "assessor", "--org-id", "acme",
			"--org-pubkey", s.path("acme.key.pub"), "--level", "3", "--jurisdiction", "EU", "--out", s.path("acme-renewed.jwt"))
		out, _ = s.run(t, exitOK, "org", "passport", "acme", "--org-key", s.path("acme.key"), "--passport", s.path("acme-renewed.jwt"))
		require.Contains(t, squeeze(out), "Passport history:")
		_, stderr := s.run(t, exitError, "org", "passport", "acme", "--org-key", s.path("globex.key"), "--passport", s.path("acme-renewed.jwt"))
		require.Contains(t, stderr, "code InvalidArgument", "signed with another organisation's key")
	})
	var agreementID string
	t.Run("propose, sign by both parties, get, terminate", func(t *testing.T) {
		out, _ := s.run(t, exitOK, "-o", "json", "agreement", "propose", "acme", "globex", "--actions", "task_send,ping",
			"--data-categories", "payments", "--valid", "365d", "--min-level", "2")
		var proposed struct {
			Agreement struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			} `json:"agreement"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &proposed), out)
		require.Equal(t, "AGREEMENT_STATUS_PENDING", proposed.Agreement.Status)
		agreementID = proposed.Agreement.ID

		out, stderr := s.run(t, exitOK, "agreement", "sign", agreementID, "--org", "acme", "--org-key", s.path("acme.key"))
		require.Contains(t, stderr, "signing as acme: "+agreementID+" between acme and globex: actions task_send,ping; data payments; valid ")
		require.Contains(t, squeeze(out), "Signed by globex: not yet\n")
		_, stderr = s.run(t, exitError, "agreement", "sign", agreementID, "--org", "globex", "--org-key", s.path("acme.key"))
		require.Contains(t, stderr, "signature", "the wrong key for the party")
		_, stderr = s.run(t, exitUsage, "agreement", "sign", agreementID, "--org", "initech", "--org-key", s.path("acme.key"))
		require.Contains(t, stderr, "not a party")
		out, _ = s.run(t, exitOK, "-o", "json", "agreement", "sign", agreementID, "--org", "globex", "--org-key", s.path("globex.key"))
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &got), "the terms summary is not on stdout")
		require.Equal(t, "AGREEMENT_STATUS_ACTIVE", got["agreement"].(map[string]any)["status"])

		out, _ = s.run(t, exitOK, "agreement", "get", agreementID)
		require.Contains(t, squeeze(out), "Actions: task_send, ping\n")
		require.Contains(t, out, "level below 2 (ATTESTED)")
		require.Regexp(t, regexp.MustCompile(`Raft index: +[1-9]`), out)
		out, _ = s.run(t, exitOK, "agreement", "terminate", agreementID, "--org", "globex", "--org-key", s.path("globex.key"), "--reason", "project ended")
		require.Contains(t, squeeze(out), "Status: TERMINATED\n")
		require.Contains(t, squeeze(out), "Termination reason: project ended\n")
	})
	t.Run("suspend names the cascade", func(t *testing.T) {
		out, _ := s.run(t, exitOK, "-o", "json", "agreement", "propose", "acme", "globex", "--actions", "ping", "--valid", "30d")
		id := regexp.MustCompile(`"id": *"(agr-[0-9a-f]+)"`).FindStringSubmatch(out)
		require.Len(t, id, 2, out)
		s.run(t, exitOK, "agreement", "sign", id[1], "--org", "acme", "--org-key", s.path("acme.key"))
		s.run(t, exitOK, "agreement", "sign", id[1], "--org", "globex", "--org-key", s.path("globex.key"))
		_, stderr := s.run(t, exitUsage, "org", "suspend", "globex")
		require.Contains(t, stderr, "reason", "suspension needs a reason")
		out, _ = s.run(t, exitOK, "org", "suspend", "globex", "--reason", "key compromised")
		require.Contains(t, squeeze(out), "What: set status of globex to SUSPENDED\n")
		require.Regexp(t, regexp.MustCompile(`Cascade evt-[0-9a-f]{16} notifies 1 partner\(s\): trustfed revocation status evt-[0-9a-f]{16}`), out)
	})
	t.Run("set-level is an admin change", func(t *testing.T) {
		env := maps.Clone(s.env)
		delete(env, "TRUSTFED_ADMIN_KEY")
		code, _, stderr := runCLI(env, "org", "set-level", "acme", "attested")
		require.Equal(t, exitUsage, code)
		require.Contains(t, stderr, "TRUSTFED_ADMIN_KEY")
		out, _ := s.run(t, exitOK, "org", "set-level", "acme", "attested")
		require.Contains(t, squeeze(out), "What: set declared level of acme to 2 (ATTESTED)\n")
		require.Contains(t, squeeze(out), "Approvals: 1 of 1 (dev-admin)\n")
		require.Contains(t, squeeze(out), "Status: APPLIED\n")
		_, stderr = s.run(t, exitError, "--admin-key", s.path("acme.key"), "org", "set-level", "acme", "trusted")
		require.Contains(t, stderr, "code PermissionDenied", "a key that is not an admin's")
	})
	t.Run("federation policy", func(t *testing.T) {
		out, _ := s.run(t, exitOK, "federation", "policy", "get")
		require.Contains(t, squeeze(out), "Onboarding cap level: 2 (ATTESTED)\n")
		out, _ = s.run(t, exitOK, "federation", "policy", "set", "--onboarding-cap", "4")
		require.Contains(t, squeeze(out), "Onboarding cap level: 4 (PRIVILEGED)\n")
		out, _ = s.run(t, exitOK, "-o", "json", "federation", "policy", "set", "--onboarding-period", "0d")
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.Equal(t, "ADMIN_CHANGE_STATUS_APPLIED", got["status"])
		require.Equal(t, "0s", got["content"].(map[string]any)["updateFederationPolicy"].(map[string]any)["onboardingPeriod"])
		out, _ = s.run(t, exitOK, "federation", "policy", "get")
		require.Contains(t, squeeze(out), "Onboarding cap level: 4 (PRIVILEGED)\n", "a set changes only the fields it names")
	})
	t.Run("issuers and passport revocation", func(t *testing.T) {
		_, stderr := s.run(t, exitError, "issuer", "accredit", "other", "--name", "Other", "--pubkey", s.path("assessor.key"), "--max-level", "4")
		require.Contains(t, stderr, "parse public key", "a private key file is refused locally")
		out, _ := s.run(t, exitOK, "issuer", "list")
		require.Regexp(t, regexp.MustCompile(`assessor +Assessor +4 \(PRIVILEGED\) +ACCREDITED`), out)
		out, _ = s.run(t, exitOK, "issuer", "get", "assessor")
		require.Contains(t, out, "Raft index:")
		_, stderr = s.run(t, exitError, "issuer", "get", "nobody")
		require.Equal(t, "error: issuer_id: issuer \"nobody\" does not exist (code NotFound)\n", stderr)
		out, _ = s.run(t, exitOK, "issuer", "withdraw", "assessor", "--reason", "lost accreditation")
		require.Contains(t, squeeze(out), "What: withdraw issuer assessor\n")
		out, _ = s.run(t, exitOK, "passport", "revoke", "p-1", "--reason", "assessment withdrawn")
		require.Contains(t, squeeze(out), "What: revoke passport p-1\n")
		out, _ = s.run(t, exitOK, "-o", "json", "passport", "revoke", "p-2", "--reason", "assessment withdrawn")
		require.Contains(t, squeeze(out), `"serial": "p-2"`)
	})
	t.Run("set-level approved by a second admin", func(t *testing.T) {
		s.run(t, exitOK, "keygen", "--out", s.path("bob.key"))
		s.run(t, exitOK, "admin", "add", "bob", "--name", "Bob", "--pubkey", s.path("bob.key.pub"))
		s.run(t, exitOK, "federation", "policy", "set", "--admin-approvals", "2")
		out, _ := s.run(t, exitOK, "org", "set-level", "acme", "trusted")
		require.Contains(t, squeeze(out), "Status: PENDING\n")
		require.Contains(t, squeeze(out), "What: set declared level of acme to 3 (TRUSTED)\n")
		require.Contains(t, squeeze(out), "Approvals: 1 of 2 (dev-admin)\n")
		id := regexp.MustCompile(`trustfed admin approve (chg-[0-9a-f]{16})`).FindStringSubmatch(out)
		require.Len(t, id, 2, out)
		_, stderr := s.run(t, exitError, "admin", "approve", id[1])
		require.Contains(t, stderr, `admin "dev-admin" already approved change `+id[1], "the proposer cannot approve twice")
		out, _ = s.run(t, exitOK, "admin", "approve", id[1], "--admin-key", s.path("bob.key"))
		require.Contains(t, squeeze(out), "Status: APPLIED\n")
		require.Contains(t, squeeze(out), "Approvals: 2 of 2 (dev-admin, bob)\n")
	})
	t.Run("server error", func(t *testing.T) {
		stdout, stderr := s.run(t, exitError, "org", "get", "nobody")
		require.Empty(t, stdout)
		require.Regexp(t, `^error: .*"nobody".* \(code NotFound\)\n$`, stderr)
	})
	t.Run("untrusted server", func(t *testing.T) {
		code, _, stderr := runCLI(map[string]string{"TRUSTFED_ADDR": s.GRPCAddr()}, "status", "--timeout", "5s")
		require.Equal(t, exitError, code, "the server's certificate is not under the system roots")
		require.Contains(t, stderr, "code Unavailable")
	})
	t.Run("status reports the server's version", func(t *testing.T) {
		out, _ := s.run(t, exitOK, "-o", "json", "status")
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.Equal(t, "dev", got["nodeId"])
		require.Equal(t, "test", got["version"])
	})
}

// The audit verbs against a real server: an organisation cosigns the
// registry's signed checkpoint (the registry verifies the cosignature), the
// tree head verifies with that witness, and entries and proofs verify
// against the signed tree.
func TestAuditCmdAgainstRealServer(t *testing.T) {
	s := startRealServer(t)
	s.federation(t, "acme")
	state := s.path("witness.json")
	var out string
	testutil.Eventually(t, 30*time.Second, "acme cosigns a signed checkpoint", func() error {
		code, stdout, stderr := runCLI(s.env, "audit", "witness", "--org", "acme", "--org-key", s.path("acme.key"), "--state", state)
		if code != exitOK {
			return fmt.Errorf("exit %d: %s", code, stderr)
		}
		out = stdout
		return nil
	})
	require.Contains(t, out, "acme cosigned test.trustfed.local/audit at ")

	out, _ = s.run(t, exitOK, "audit", "sth", "--witness", "acme="+s.path("acme.key.pub"))
	require.Contains(t, squeeze(out), "Origin: test.trustfed.local/audit\n")
	// The dev server endorsed its own key: its checkpoints are certified by
	// its node key (a quorum of one), not signed by a registry key.
	require.Contains(t, squeeze(out), "Verified: certified by a quorum of the registry nodes (dev; keys from GetKeys); cosigned by 1 of 1 trusted witnesses (need 1): acme\n")
	require.NotContains(t, out, "Verifier key:")

	_, stderr := s.run(t, exitError, "audit", "sth", "--registry-key", otherVerifierKey(t, "test.trustfed.local/audit"))
	require.Contains(t, stderr, "does not verify", "a pinned key that is not the registry's")

	// A checkpoint is signed every second: wait until one covers more than
	// the 3 entries listed (and the 4 of the prefix proof below).
	testutil.Eventually(t, 30*time.Second, "a signed checkpoint covers more than 4 entries", func() error {
		out, _ = s.run(t, exitOK, "audit", "sth")
		m := regexp.MustCompile(`Tree size: +([0-9]+)`).FindStringSubmatch(out)
		if len(m) != 2 {
			return fmt.Errorf("no tree size in %q", out)
		}
		if n, _ := strconv.Atoi(m[1]); n <= 4 {
			return fmt.Errorf("the signed tree has %d entries", n)
		}
		return nil
	})
	out, _ = s.run(t, exitOK, "audit", "entries", "--proofs", "--limit", "3")
	require.Contains(t, out, "(more entries: raise --limit, now 3)")
	require.Regexp(t, `Inclusion proofs: all 3 entries verified in the signed tree of [0-9]+ entries`, out)

	out, _ = s.run(t, exitOK, "audit", "proof", "2")
	require.Regexp(t, `Verified: in the signed tree of [0-9]+ entries`, squeeze(out))
	out, _ = s.run(t, exitOK, "audit", "proof", "2", "--tree-size", "4")
	require.Regexp(t, `Verified: in the tree of 4 entries, a prefix of the signed tree of [0-9]+ entries`, squeeze(out))
	_, stderr = s.run(t, exitError, "audit", "proof", "1000000")
	require.Contains(t, stderr, "not in the signed tree")
}

// otherVerifierKey is a checkpoint verifier key for origin that is not the
// registry's.
func otherVerifierKey(t *testing.T, origin string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	vkey, err := attestation.CheckpointVerifierKey(origin, pub)
	require.NoError(t, err)
	return vkey
}
