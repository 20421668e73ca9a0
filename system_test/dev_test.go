package system_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

type devServer struct {
	srv    *testutil.Server
	token  string
	caFile string
	http   *http.Client
	base   string
	admins admins
}

func startDev(t testing.TB, extra ...string) *devServer {
	t.Helper()
	dir := t.TempDir()
	srv := testutil.StartServer(t, bin, dir, append(append([]string{"-dev"}, loopbackPorts...), extra...)...)
	d := &devServer{srv: srv, token: adminToken(t, dir), caFile: srv.Addrs.CACert, base: "https://" + srv.Addrs.HTTPAddr}
	d.http = httpsClient(t, d.caFile)
	testutil.Eventually(t, 30*time.Second, "dev server prints its banner", func() error {
		if !strings.Contains(srv.Stdout.String(), "admin token") {
			return errors.New("no banner yet")
		}
		return nil
	})
	d.admins = devAdmins(t, dir)
	return d
}

// restAnswer is a REST response: status, headers and the decoded error body.
type restAnswer struct {
	status  int
	header  http.Header
	raw     string
	message string
	fields  []string // the BadRequest detail's field paths
}

// raw sends a REST request with the dev admin token.
func (d *devServer) raw(t *testing.T, method, path, contentType, body string) restAnswer {
	t.Helper()
	return d.rawAs(t, d.token, method, path, contentType, body)
}

// rawAs sends a REST request with token ("": none).
func (d *devServer) rawAs(t *testing.T, token, method, path, contentType, body string) restAnswer {
	t.Helper()
	req, err := http.NewRequest(method, d.base+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := d.http.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := restAnswer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	var e struct {
		Message string `json:"message"`
		Details []struct {
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	}
	if json.Unmarshal(b, &e) == nil {
		a.message = e.Message
		for _, d := range e.Details {
			for _, v := range d.FieldViolations {
				a.fields = append(a.fields, v.Field)
			}
		}
	}
	return a
}

// do sends a REST request and returns the status and the decoded JSON body.
func (d *devServer) do(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	var b []byte
	if body != nil {
		var err error
		b, err = json.Marshal(body)
		require.NoError(t, err)
	}
	a := d.rawAs(t, token, method, path, "", string(b))
	var out map[string]any
	if a.raw != "" {
		require.NoError(t, json.Unmarshal([]byte(a.raw), &out), "body: %s", a.raw)
	}
	return a.status, out
}

// cli runs the trustfed CLI against the dev server and returns stdout,
// stderr and the exit code.
func (d *devServer) cli(t *testing.T, token string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TRUSTFED_ADDR="+d.srv.Addrs.GRPCAddr, "TRUSTFED_TOKEN="+token, "TRUSTFED_CACERT="+d.caFile, "TRUSTFED_TOKEN_FILE=",
		"TRUSTFED_ADMIN_KEY="+filepath.Join(d.srv.DataDir, "admin.key"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return stdout.String(), stderr.String(), code
}

func TestDevServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d := startDev(t)

	t.Run("token is stored hashed, file is private", func(t *testing.T) {
		fi, err := os.Stat(filepath.Join(d.srv.DataDir, "admin.token"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	})

	t.Run("REST without a token is 401", func(t *testing.T) {
		code, body := d.do(t, "GET", "/v1/organizations", "", nil)
		require.Equal(t, http.StatusUnauthorized, code)
		require.Contains(t, body["message"], "Bearer")
		code, _ = d.do(t, "GET", "/v1/organizations", "tf_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", nil)
		require.Equal(t, http.StatusUnauthorized, code)
	})

	t.Run("the banner names the metrics URL; the admin token reads it", func(t *testing.T) {
		url := d.base + "/metrics"
		require.Contains(t, d.srv.Stdout.String(), url)
		code, m, body := d.scrape(t, d.token)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, 1.0, metricValue(m, "trustfed_raft_ready_leader", nil))
	})

	t.Run("OpenAPI document is served", func(t *testing.T) {
		code, body := d.do(t, "GET", "/v1/openapi.json", "", nil)
		require.Equal(t, http.StatusOK, code)
		paths, ok := body["paths"].(map[string]any)
		require.True(t, ok)
		require.Contains(t, paths, "/v1/organizations")
		require.Contains(t, paths, "/v1/tokens")
		require.NotContains(t, paths, "/v1/interactions:check", "member calls are gRPC only (client certificate)")
	})

	fed := testutil.NewFederation(t)
	b64 := base64.StdEncoding.EncodeToString
	admin := dial(t, d.srv, d.caFile, d.token)
	// acme-bank's member node asks for decisions (over gRPC with its client
	// certificate: the REST gateway never presents one, so REST callers are
	// who their token says and no token may ask for a decision). It lives
	// as long as the test: the subtests after the walk-through use it too.
	var acme *client.Client
	outer := t

	// postChange proposes an admin change over REST, signed by the dev admin.
	postChange := func(t *testing.T, c *trustfedv1.AdminChange) (int, map[string]any) {
		change := testutil.ChangeBytes(t, c, time.Now())
		approval := client.ApproveAdminChange(d.admins[0], change)
		return d.do(t, "POST", "/v1/admin/changes", d.token, map[string]any{"change": b64(change),
			"approval": map[string]any{"public_key": b64(approval.PublicKey), "signature": b64(approval.Signature)}})
	}

	t.Run("REST walk-through", func(t *testing.T) {
		code, body := postChange(t, testutil.Accredit(fed.Issuer()))
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "ADMIN_CHANGE_STATUS_APPLIED", body["change"].(map[string]any)["status"], "the dev quorum is one admin")
		code, body = d.do(t, "GET", "/v1/issuers/"+fed.IssuerID, d.token, nil)
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "ISSUER_STATUS_ACCREDITED", body["issuer"].(map[string]any)["status"])

		for _, org := range []struct {
			id    string
			level uint32
		}{{"acme-bank", 3}, {"st-mary", 2}} {
			reg, sig := fed.Registration(org.id, org.level, org.level, time.Now())
			code, body = d.do(t, "POST", "/v1/organizations:register", d.token, map[string]any{"registration": b64(reg), "signature": b64(sig)})
			require.Equal(t, http.StatusOK, code, "%v", body)
			require.Equal(t, "ORGANIZATION_STATUS_PENDING", body["organization"].(map[string]any)["status"])
			code, body = d.do(t, "POST", "/v1/organizations/"+org.id+":approve", d.token, map[string]any{})
			require.Equal(t, http.StatusOK, code, "%v", body)
			require.Equal(t, "ORGANIZATION_STATUS_ACTIVE", body["organization"].(map[string]any)["status"])
		}

		m := testutil.EnrolMember(t, admin, fed, "acme-bank", "")
		var err error
		acme, err = client.New(context.Background(), m.Config(baseConfig(d.srv, d.caFile)))
		require.NoError(t, err)
		outer.Cleanup(func() { _ = acme.Close() })
		code, body = d.do(t, "POST", "/v1/interactions:check", d.token, map[string]any{"from_organization_id": "acme-bank", "to_organization_id": "st-mary", "action": "ping"})
		require.Equal(t, http.StatusNotFound, code, "only member nodes ask for decisions, over gRPC: %v", body)
		// check renders the decision as the REST gateway does.
		check := func(action string) map[string]any {
			resp, err := acme.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme-bank", ToOrganizationId: "st-mary", Action: action})
			require.NoError(t, err)
			b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(resp)
			require.NoError(t, err)
			var body map[string]any
			require.NoError(t, json.Unmarshal(b, &body))
			return body
		}
		body = check("task_send")
		require.Equal(t, "DECISION_DENY", body["decision"], "no agreement yet")
		require.Equal(t, "NO_AGREEMENT", body["reasons"].([]any)[0].(map[string]any)["code"])
		require.EqualValues(t, 2, body["effectiveLevel"], "onboarding caps acme-bank at 2")

		code, body = d.do(t, "POST", "/v1/agreements", d.token, map[string]any{
			"organization_a_id": "acme-bank", "organization_b_id": "st-mary",
			"scope":     map[string]any{"allowed_actions": []string{"ping", "task_send", "context_share"}},
			"not_after": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339),
		})
		require.Equal(t, http.StatusOK, code, "%v", body)
		ag := body["agreement"].(map[string]any)
		require.Equal(t, "AGREEMENT_STATUS_PENDING", ag["status"])
		id := ag["id"].(string)
		terms, err := base64.StdEncoding.DecodeString(ag["terms"].(string))
		require.NoError(t, err)

		code, body = d.do(t, "POST", "/v1/agreements/"+id+":sign", d.token, map[string]any{"organization_id": "acme-bank", "signature": b64(fed.SignTerms("acme-bank", terms))})
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "DECISION_DENY", check("task_send")["decision"], "one signature is not enough")
		code, body = d.do(t, "POST", "/v1/agreements/"+id+":sign", d.token, map[string]any{"organization_id": "st-mary", "signature": b64(fed.SignTerms("st-mary", terms[1:]))})
		require.Equal(t, http.StatusBadRequest, code, "a signature over other bytes: %v", body)
		code, body = d.do(t, "POST", "/v1/agreements/"+id+":sign", d.token, map[string]any{"organization_id": "st-mary", "signature": b64(fed.SignTerms("st-mary", terms))})
		require.Equal(t, http.StatusOK, code, "%v", body)
		require.Equal(t, "AGREEMENT_STATUS_ACTIVE", body["agreement"].(map[string]any)["status"])

		body = check("task_send")
		require.Equal(t, "DECISION_ALLOW", body["decision"], "%v", body)
		require.EqualValues(t, 2, body["effectiveLevel"])
		require.Equal(t, id, body["agreementId"])
		require.NotEqual(t, "0", body["meta"].(map[string]any)["index"], "the decision names the raft index")
		caps := body["fromLevelCaps"].([]any)
		require.Equal(t, "onboarding", caps[len(caps)-1].(map[string]any)["source"])

		body = check("context_share")
		require.Equal(t, "DECISION_DENY", body["decision"], "context_share needs level 3; onboarding caps at 2")

		for _, org := range []string{"acme-bank", "st-mary"} {
			code, body = postChange(t, testutil.OverrideOnboarding(org, "pilot"))
			require.Equal(t, http.StatusOK, code, "%v", body)
			require.Equal(t, "ADMIN_CHANGE_STATUS_APPLIED", body["change"].(map[string]any)["status"])
		}
		require.EqualValues(t, 2, check("context_share")["effectiveLevel"], "st-mary is attested 2")

		term, sig := fed.Termination("st-mary", id, "pilot over")
		code, body = d.do(t, "POST", "/v1/agreements:terminate", d.token, map[string]any{"termination": b64(term), "signature": b64(sig)})
		require.Equal(t, http.StatusOK, code, "%v", body)
		body = check("task_send")
		require.Equal(t, "DECISION_DENY", body["decision"])
		require.Equal(t, "AGREEMENT_NOT_IN_FORCE", body["reasons"].([]any)[0].(map[string]any)["code"])
		require.Contains(t, body["reasons"].([]any)[0].(map[string]any)["message"], "pilot over")

		code, body = d.do(t, "GET", "/v1/organizations/st-mary", d.token, nil)
		require.Equal(t, http.StatusOK, code)
		require.EqualValues(t, 2, body["organization"].(map[string]any)["passport"].(map[string]any)["level"])
	})

	t.Run("bad input: precise status naming the field, nothing stored", func(t *testing.T) {
		require.NotNil(t, acme, "the REST walk-through enrolled acme-bank's member node")
		expired, expiredSig := fed.Registration("x-org", 1, 1, time.Now(), func(r *trustfedv1.Registration) {
			r.Passport = fed.Passport("x-org", 1, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
		})
		badLevel := testutil.ChangeBytes(t, testutil.SetLevel("acme-bank", 7), time.Now())
		badLevelSig := client.ApproveAdminChange(d.admins[0], badLevel)
		raise := testutil.ChangeBytes(t, testutil.SetLevel("acme-bank", 4), time.Now())
		strangerSig := testutil.NewAdmin("stranger").Approve(raise)
		cases := []struct {
			method, path string
			body         any
			code         int
			field        string
		}{
			{"POST", "/v1/organizations:register", map[string]any{"registration": b64(expired), "signature": b64(expiredSig)}, 400, "registration.passport"},
			{"POST", "/v1/organizations:register", map[string]any{"registration": b64(expired), "signature": b64(expiredSig[1:])}, 400, "signature"},
			{"POST", "/v1/organizations:register", map[string]any{"registration": "!!", "signature": ""}, 400, "registration"},
			{"POST", "/v1/organizations:register", map[string]any{"registration": b64(expired), "bogus": 1}, 400, "bogus"},
			{"PATCH", "/v1/organizations/acme-bank", map[string]any{"declared_level": 2}, 400, "declared_level"},
			{"POST", "/v1/admin/changes", map[string]any{"change": b64([]byte("nope"))}, 400, "change"},
			{"POST", "/v1/admin/changes", map[string]any{"change": b64(badLevel), "approval": map[string]any{"public_key": b64(badLevelSig.PublicKey), "signature": b64(badLevelSig.Signature)}},
				400, "change.set_declared_level.level"},
			{"POST", "/v1/admin/changes", map[string]any{"change": b64(raise), "approval": map[string]any{"public_key": b64(strangerSig.PublicKey), "signature": b64(strangerSig.Signature)}},
				403, "approval.public_key"},
			{"POST", "/v1/admin/changes/chg-0000000000000000:approve", map[string]any{"approval": map[string]any{"public_key": b64(strangerSig.PublicKey), "signature": b64(strangerSig.Signature)}},
				404, "change_id"},
			{"POST", "/v1/agreements", map[string]any{"organization_a_id": "acme-bank", "organization_b_id": "ghost", "scope": map[string]any{"allowed_actions": []string{"ping"}}, "not_after": "2030-01-01T00:00:00Z"}, 404, "organization_b_id"},
			{"POST", "/v1/agreements", map[string]any{"organization_a_id": "acme-bank", "organization_b_id": "st-mary", "scope": map[string]any{"allowed_actions": []string{"fly"}}, "not_after": "2030-01-01T00:00:00Z"}, 400, "scope.allowed_actions[0]"},
			{"GET", "/v1/organizations/ghost", nil, 404, "organization_id"},
			{"GET", "/v1/agreements/agr-nothex", nil, 400, "agreement_id"},
		}
		for _, tc := range cases {
			code, body := d.do(t, tc.method, tc.path, d.token, tc.body)
			require.Equal(t, tc.code, code, "%s %s %v: %v", tc.method, tc.path, tc.body, body)
			require.Contains(t, fmt.Sprint(body["message"]), tc.field, "%s %s", tc.method, tc.path)
		}
		for _, tc := range []struct {
			to, action string
			code       codes.Code
			field      string
		}{
			{"nobody", "ping", codes.NotFound, "to_organization_id"},
			{"acme-bank", "ping", codes.InvalidArgument, "to_organization_id"},
			{"st-mary", "fly", codes.InvalidArgument, "action"},
		} {
			_, err := acme.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "acme-bank", ToOrganizationId: tc.to, Action: tc.action})
			require.Equal(t, tc.code, status.Code(err), "check to %s %s: %v", tc.to, tc.action, err)
			require.Contains(t, status.Convert(err).Message(), tc.field, "check to %s %s", tc.to, tc.action)
		}
		code, body := d.do(t, "GET", "/v1/organizations/x-org", d.token, nil)
		require.Equal(t, http.StatusNotFound, code, "refused registrations stored nothing: %v", body)
		code, body = d.do(t, "GET", "/v1/organizations/acme-bank", d.token, nil)
		require.Equal(t, http.StatusOK, code)
		require.EqualValues(t, 3, body["organization"].(map[string]any)["declaredLevel"], "refused admin changes changed nothing")
	})

	t.Run("CLI: a federation from scratch", func(t *testing.T) {
		dir := t.TempDir()
		p := func(name string) string { return filepath.Join(dir, name) }
		run := func(want int, args ...string) string {
			t.Helper()
			out, errOut, code := d.cli(t, d.token, args...)
			require.Equal(t, want, code, "trustfed %v\nstdout: %s\nstderr: %s", args, out, errOut)
			return out
		}
		for _, k := range []string{"assessor", "city-gov", "port-auth"} {
			run(0, "keygen", "--out", p(k+".key"))
		}
		run(0, "issuer", "accredit", "cli-assessor", "--name", "CLI Assessor", "--pubkey", p("assessor.key.pub"), "--max-level", "4")
		for _, org := range []string{"city-gov", "port-auth"} {
			run(0, "issuer", "passport", "issue", "--issuer-key", p("assessor.key"), "--issuer-id", "cli-assessor", "--org-id", org,
				"--org-pubkey", p(org+".key.pub"), "--level", "3", "--jurisdiction", "EU", "--out", p(org+".jwt"))
			out := run(0, "org", "register", "--id", org, "--name", "Org "+org, "--jurisdiction", "EU", "--level", "3", "--org-key", p(org+".key"), "--passport", p(org+".jwt"))
			require.Contains(t, out, "PENDING")
			run(0, "org", "approve", org)
			run(0, "org", "override-onboarding", org, "--reason", "assessed on site")
		}
		require.Contains(t, run(0, "passport", "decode", p("city-gov.jwt")), "cli-assessor")

		// city-gov's member node: its key made on the node, enrolled with
		// the organisation's signature, its certificate by challenge-response;
		// it asks for decisions with --cert/--key and no token.
		run(0, "keygen", "--out", p("gw-1.key"))
		run(0, "member", "enrol", "city-gov", "gw-1", "--org-key", p("city-gov.key"), "--node-pubkey", p("gw-1.key.pub"))
		node := func(want int, args ...string) string {
			t.Helper()
			args = append([]string{"--cert", p("gw-1.crt"), "--key", p("gw-1.key")}, args...)
			out, errOut, code := d.cli(t, "", args...)
			require.Equal(t, want, code, "trustfed %v\nstdout: %s\nstderr: %s", args, out, errOut)
			return out
		}
		out, errOut, code := d.cli(t, "", "member", "cert", "city-gov", "gw-1", "--node-key", p("gw-1.key"), "--out-cert", p("gw-1.crt"))
		require.Equal(t, 0, code, "member cert: %s%s", out, errOut)

		out = node(3, "check", "--from", "city-gov", "--to", "port-auth", "--action", "context_share")
		require.Contains(t, out, "NO_AGREEMENT")

		out = run(0, "agreement", "propose", "city-gov", "port-auth", "--actions", "context_share,ping", "--valid", "30d", "-o", "json")
		var proposed struct {
			Agreement struct {
				ID string `json:"id"`
			} `json:"agreement"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &proposed), out)
		agr := proposed.Agreement.ID
		run(0, "agreement", "sign", agr, "--org", "city-gov", "--org-key", p("city-gov.key"))
		run(1, "agreement", "sign", agr, "--org", "port-auth", "--org-key", p("city-gov.key")) // the wrong key
		require.Contains(t, run(0, "agreement", "sign", agr, "--org", "port-auth", "--org-key", p("port-auth.key")), "ACTIVE")

		out = node(0, "check", "--from", "city-gov", "--to", "port-auth", "--action", "context_share", "--verify", "--data-types", "email")
		require.Contains(t, out, "ALLOW")
		require.Contains(t, out, "Valid until:")
		out = node(3, "check", "--from", "city-gov", "--to", "port-auth", "--action", "agent_spawn")
		require.Contains(t, out, "ACTION_OUT_OF_AGREEMENT_SCOPE")

		run(0, "agreement", "terminate", agr, "--org", "port-auth", "--org-key", p("port-auth.key"), "--reason", "pilot over")
		out = node(3, "check", "--from", "city-gov", "--to", "port-auth", "--action", "context_share")
		require.Contains(t, out, "AGREEMENT_NOT_IN_FORCE")

		out = run(0, "org", "set-level", "city-gov", "2", "--reason", "assessment downgraded")
		require.Contains(t, out, "APPLIED")
		require.Contains(t, run(0, "admin", "list"), "dev-admin")
		require.Contains(t, run(0, "admin", "changes", "list"), "set declared level of city-gov to 2 (ATTESTED)")
		require.Contains(t, run(0, "status"), "Leader")
		out = run(0, "org", "list", "-o", "json")
		var list struct {
			Organizations []struct {
				ID string `json:"id"`
			} `json:"organizations"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &list), out)
		require.Len(t, list.Organizations, 4)

		// A fresh agreement, then revoke one side: the cascade names its partner.
		out = run(0, "agreement", "propose", "city-gov", "port-auth", "--actions", "ping", "--valid", "30d", "-o", "json")
		require.NoError(t, json.Unmarshal([]byte(out), &proposed), out)
		run(0, "agreement", "sign", proposed.Agreement.ID, "--org", "city-gov", "--org-key", p("city-gov.key"))
		run(0, "agreement", "sign", proposed.Agreement.ID, "--org", "port-auth", "--org-key", p("port-auth.key"))
		require.Contains(t, run(0, "org", "graph", "port-auth"), "city-gov")
		out = run(0, "org", "revoke", "port-auth", "--reason", "key compromised")
		m := regexp.MustCompile(`Cascade (evt-[0-9a-f]{16}) notifies 1 partner`).FindStringSubmatch(out)
		require.Len(t, m, 2, out)
		out = run(0, "revocation", "status", m[1], "--no-wait")
		require.Contains(t, out, "REVOCATION of port-auth")
		require.Contains(t, out, "city-gov")
		require.Contains(t, node(3, "check", "--from", "city-gov", "--to", "port-auth", "--action", "ping"), "NOT_ACTIVE")
		require.Contains(t, run(0, "revocation", "list", "--org", "port-auth"), m[1])

		_, errOut, code = d.cli(t, "", "org", "list")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "Unauthenticated")
	})

	require.NoError(t, d.srv.Stop(), "clean shutdown on SIGTERM")
}
