package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// cliFake is a registry node that answers from fixed data (a DENY and an
// ALLOW, two pages of organisations) and records the bearer tokens it
// receives: what the CLI sends and how it prints answers. The verbs whose
// requests the registry verifies (signatures) run against a real server in
// realserver_test.go.
type cliFake struct {
	trustfedv1.UnimplementedRegistryServiceServer
	trustfedv1.UnimplementedClusterServiceServer
	trustfedv1.UnimplementedCascadeServiceServer

	mu        sync.Mutex
	auth      []string
	staleness []string // trustfed-max-staleness metadata received
}

// record notes the credential of a call: "Bearer <token>", or else
// "cert:<subject CN>" for a client certificate, or else "none".
func (f *cliFake) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	got := md.Get("authorization")
	if len(got) == 0 {
		got = []string{"none"}
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
				got = []string{"cert:" + ti.State.PeerCertificates[0].Subject.CommonName}
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, got...)
	f.staleness = append(f.staleness, md.Get("trustfed-max-staleness")...)
}

// takeAuth returns and forgets the credentials recorded so far.
func (f *cliFake) takeAuth() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.auth
	f.auth = nil
	return out
}

func (f *cliFake) CheckInteraction(ctx context.Context, req *trustfedv1.CheckInteractionRequest) (*trustfedv1.CheckInteractionResponse, error) {
	f.record(ctx)
	if req.GetAction() == "discovery" {
		return &trustfedv1.CheckInteractionResponse{Decision: trustfedv1.Decision_DECISION_ALLOW, Meta: &trustfedv1.ReadMeta{Index: 9}}, nil
	}
	return &trustfedv1.CheckInteractionResponse{
		Decision: trustfedv1.Decision_DECISION_DENY,
		Reasons:  []*trustfedv1.Reason{{Code: "NO_AGREEMENT", Message: "no agreement"}},
		Meta:     &trustfedv1.ReadMeta{Index: 9},
	}, nil
}

func (f *cliFake) ListOrganizations(ctx context.Context, req *trustfedv1.ListOrganizationsRequest) (*trustfedv1.ListOrganizationsResponse, error) {
	f.record(ctx)
	if req.GetPageToken() == "" {
		return &trustfedv1.ListOrganizationsResponse{Organizations: []*trustfedv1.Organization{{Id: "acme", Name: "Acme", DeclaredLevel: 3}}, NextPageToken: "next"}, nil
	}
	return &trustfedv1.ListOrganizationsResponse{Organizations: []*trustfedv1.Organization{{Id: "globex", Name: "Globex", DeclaredLevel: 1}}}, nil
}

func (f *cliFake) Status(ctx context.Context, _ *trustfedv1.StatusRequest) (*trustfedv1.StatusResponse, error) {
	f.record(ctx)
	return &trustfedv1.StatusResponse{NodeId: "n1", State: "Leader", Ready: true,
		Members: []*trustfedv1.ClusterMember{{NodeId: "n1", Voter: true, Leader: true}}}, nil
}

// serveFake serves the fake services register adds over TLS on loopback
// until the test ends; it returns the address and the CA file.
func serveFake(t *testing.T, register func(*grpc.Server)) (addr, caFile string) {
	t.Helper()
	files, err := attestation.EnsureDevTLS(t.TempDir(), "n1", []string{"127.0.0.1"}, time.Now())
	require.NoError(t, err)
	cfg, err := attestation.ServerTLSConfig(files)
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	register(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String(), files.CAFile
}

// startCLIFake serves a cliFake over TLS and returns its address and CA file.
func startCLIFake(t *testing.T) (*cliFake, string, string) {
	t.Helper()
	fake := &cliFake{}
	addr, ca := serveFake(t, func(srv *grpc.Server) {
		trustfedv1.RegisterRegistryServiceServer(srv, fake)
		trustfedv1.RegisterClusterServiceServer(srv, fake)
	})
	return fake, addr, ca
}

// runCLI runs the CLI with args and env and returns exit code and output.
func runCLI(env map[string]string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr, func(k string) string { return env[k] })
	return code, stdout.String(), stderr.String()
}

func TestCLIUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, "unknown command"},
		{"unknown subcommand", []string{"org", "frobnicate"}, "unknown command"},
		{"unknown flag", []string{"status", "--bogus"}, "unknown flag"},
		{"missing argument", []string{"org", "get"}, "expects 1 argument"},
		{"extra argument", []string{"status", "x"}, "expects 0 argument"},
		{"missing required flag", []string{"check", "--from", "acme", "--to", "globex"}, `"action" not set`},
		{"bad org id", []string{"org", "get", "Acme"}, "not a valid organisation id"},
		{"bad level", []string{"org", "set-level", "acme", "9"}, "out of range"},
		{"bad output", []string{"-o", "yaml", "status"}, "--output"},
		{"token and file", []string{"status", "--token", "a", "--token-file", "b"}, "mutually exclusive"},
		{"bad timeout", []string{"status", "--timeout", "soon"}, "invalid argument"},
		{"ca without host", []string{"ca", "issue-node", "--dir", "d", "--node-id", "n1"}, `"host" not set`},
		{"decision without keys", []string{"decision", "verify", "d.json"}, `"keys" not set`},
		{"decision without file", []string{"decision", "verify", "--keys", "k.json"}, "expects 1 argument"},
		{"decision bad time", []string{"decision", "verify", "d.json", "--keys", "k.json", "--at", "yesterday"}, "--at"},
		{"webhook over plain http", []string{"org", "set-webhook", "acme", "--org-key", "k", "--endpoint", "http://hooks.example"}, "--endpoint[0]"},
		{"webhook without key", []string{"org", "set-webhook", "acme", "--endpoint", "https://hooks.example"}, `[org-key key]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(nil, tt.args...)
			require.Equal(t, exitUsage, code, stderr)
			require.Empty(t, stdout)
			require.True(t, strings.HasPrefix(stderr, "error: "), stderr)
			require.Contains(t, stderr, tt.want)
			require.Contains(t, stderr, "--help' for usage")
			require.NotContains(t, stderr, "goroutine")
		})
	}
}

func TestCLIHelp(t *testing.T) {
	code, stdout, _ := runCLI(nil, "check", "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "3  DENY")
	code, stdout, _ = runCLI(nil, "org")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "set-level")
	require.Contains(t, stdout, "register")
	require.NotContains(t, stdout, "create")
	code, stdout, _ = runCLI(nil, "agreement")
	require.Equal(t, exitOK, code)
	for _, verb := range []string{"propose", "sign", "terminate", "get", "list"} {
		require.Contains(t, stdout, verb)
	}
	require.NotContains(t, stdout, "create")
}

func TestCLIAgainstServer(t *testing.T) {
	fake, addr, caFile := startCLIFake(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("tf_file_token\n"), 0o600))
	env := map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": caFile, "TRUSTFED_TOKEN": "tf_env_token"}

	t.Run("check allow", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "check", "--from", "acme", "--to", "globex", "--action", "discovery")
		require.Equal(t, exitOK, code, stderr)
		require.True(t, strings.HasPrefix(stdout, "ALLOW\n"), stdout)
		require.Contains(t, stdout, "Raft index:       9")
	})
	t.Run("check deny", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "check", "--from", "acme", "--to", "globex", "--action", "task_send")
		require.Equal(t, exitDeny, code)
		require.Empty(t, stderr)
		require.True(t, strings.HasPrefix(stdout, "DENY\n"), stdout)
		require.Contains(t, stdout, "NO_AGREEMENT")
	})
	t.Run("check deny json", func(t *testing.T) {
		code, stdout, _ := runCLI(env, "-o", "json", "check", "--from", "acme", "--to", "globex", "--action", "task_send")
		require.Equal(t, exitDeny, code)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &got))
		require.Equal(t, "DECISION_DENY", got["decision"])
	})
	t.Run("list follows pages", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "org", "list", "--stale")
		require.Equal(t, exitOK, code, stderr)
		require.Contains(t, stdout, "acme    Acme    3 (TRUSTED)")
		require.Contains(t, stdout, "globex  Globex  1 (VERIFIED)")
	})
	t.Run("status json", func(t *testing.T) {
		code, stdout, stderr := runCLI(env, "status", "-o", "json")
		require.Equal(t, exitOK, code, stderr)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &got))
		require.Equal(t, "n1", got["nodeId"])
	})
	t.Run("token sources", func(t *testing.T) {
		fake.mu.Lock()
		fake.auth = nil
		fake.mu.Unlock()
		_, _, stderr := runCLI(env, "status")
		require.Empty(t, stderr)
		_, _, stderr = runCLI(env, "status", "--token-file", tokenFile)
		require.Empty(t, stderr)
		_, _, stderr = runCLI(env, "status", "--token", "tf_flag_token")
		require.Empty(t, stderr)
		fake.mu.Lock()
		defer fake.mu.Unlock()
		require.Equal(t, []string{"Bearer tf_env_token", "Bearer tf_file_token", "Bearer tf_flag_token"}, fake.auth)
	})
}

func TestCLICA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	code, stdout, stderr := runCLI(nil, "ca", "init", "--dir", dir)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, filepath.Join(dir, "ca.pem"))

	code, _, stderr = runCLI(nil, "ca", "init", "--dir", dir)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "already exists")

	out := t.TempDir()
	code, stdout, stderr = runCLI(nil, "-o", "json", "ca", "issue-node", "--dir", dir, "--node-id", "node-1",
		"--host", "10.0.0.1", "--host", "node-1.internal",
		"--out-cert", filepath.Join(out, "n.pem"), "--out-key", filepath.Join(out, "n-key.pem"))
	require.Equal(t, exitOK, code, stderr)
	var got caFiles
	require.NoError(t, json.Unmarshal([]byte(stdout), &got))
	require.Equal(t, "node-1", got.NodeID)

	ca, err := attestation.LoadCA(filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem"))
	require.NoError(t, err)
	data, err := os.ReadFile(got.CertFile)
	require.NoError(t, err)
	cert, err := attestation.ParseCertificatePEM(data)
	require.NoError(t, err)
	require.NoError(t, cert.CheckSignatureFrom(ca.Cert))
	id, ok := attestation.NodeIDFromCert(cert)
	require.True(t, ok)
	require.Equal(t, "node-1", id)
	info, err := os.Stat(got.KeyFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	code, _, stderr = runCLI(nil, "ca", "issue-node", "--dir", dir, "--node-id", "node-1", "--host", "bad host")
	require.Equal(t, exitUsage, code, stderr)
	code, _, _ = runCLI(nil, "ca", "issue-node", "--dir", t.TempDir(), "--node-id", "node-1", "--host", "h")
	require.Equal(t, exitError, code, "no CA in dir")
}

// fakeCascadeID is the cascade the fake's status changes start.
const fakeCascadeID = "evt-00000000000000aa"

func fakeCascade(org string) *trustfedv1.Cascade {
	return &trustfedv1.Cascade{Id: fakeCascadeID, CreateIndex: 7,
		Event: &trustfedv1.Event{OrganizationId: org}, Deliveries: []*trustfedv1.Delivery{{OrganizationId: "acme"}}}
}

func (f *cliFake) ListCascades(ctx context.Context, req *trustfedv1.ListCascadesRequest) (*trustfedv1.ListCascadesResponse, error) {
	f.record(ctx)
	return &trustfedv1.ListCascadesResponse{Cascades: []*trustfedv1.Cascade{fakeCascade(req.GetOrganizationId())}}, nil
}

func (f *cliFake) GetCascade(ctx context.Context, req *trustfedv1.GetCascadeRequest) (*trustfedv1.GetCascadeResponse, error) {
	f.record(ctx)
	if req.GetCascadeId() != fakeCascadeID {
		return nil, status.Errorf(codes.NotFound, "cascade %q does not exist", req.GetCascadeId())
	}
	return &trustfedv1.GetCascadeResponse{Cascade: fakeCascade("globex")}, nil
}

// TestCLIHelpNeverPrintsSecretsFromTheEnvironment walks the whole command tree
// and asks each command for --help with every environment variable the CLI
// reads set to a marker: no value from the environment (a bearer token, the
// path of a key or token file) is ever printed as a flag default.
func TestCLIHelpNeverPrintsSecretsFromTheEnvironment(t *testing.T) {
	const marker = "SECRET-MARKER-c0ffee"
	env := map[string]string{}
	for _, name := range []string{client.EnvAddr, client.EnvToken, client.EnvTokenFile, client.EnvCACert, client.EnvCert, client.EnvKey, envAdminKey} {
		env[name] = marker + "-" + name
	}
	var paths [][]string
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range cmd.Commands() {
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(newRootCmd(newApp(io.Discard, io.Discard, nil)), nil)
	require.Greater(t, len(paths), 50, "the walk found the command tree")
	for _, path := range paths {
		code, stdout, stderr := runCLI(env, append(path, "--help")...)
		require.Equal(t, exitOK, code, "%v --help: %s", path, stderr)
		require.NotContains(t, stdout+stderr, marker, "%v --help prints a value from the environment", path)
	}
	_, stdout, _ := runCLI(env, "--help")
	require.Contains(t, stdout, "(env "+client.EnvToken+")", "the help names the variable instead")
}

// Files that are not a decision or a keys answer are refused with the file
// named (exit 1).
func TestDecisionVerifyBadFiles(t *testing.T) {
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "notes.txt")
	require.NoError(t, os.WriteFile(notJSON, []byte("ALLOW, trust me"), 0o600))
	empty := filepath.Join(dir, "keys.json")
	require.NoError(t, os.WriteFile(empty, []byte(`{"keys":[]}`), 0o600))
	claim := filepath.Join(dir, "decision.json")
	require.NoError(t, os.WriteFile(claim, []byte(`{"decision":"DECISION_ALLOW"}`), 0o600))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"decision", "verify", filepath.Join(dir, "missing.json"), "--keys", empty}, "missing.json: no such file"},
		{[]string{"decision", "verify", notJSON, "--keys", empty}, "notes.txt is not the JSON of a trustfed.v1.CheckInteractionResponse"},
		{[]string{"decision", "verify", claim, "--keys", notJSON}, "--keys: " + notJSON + " is not the JSON of a trustfed.v1.GetKeysResponse"},
		{[]string{"decision", "verify", claim, "--keys", empty}, "holds no registry key"},
	} {
		code, stdout, stderr := runCLI(nil, tt.args...)
		require.Equal(t, exitError, code, "%v: %s", tt.args, stderr)
		require.Empty(t, stdout)
		require.Contains(t, stderr, tt.want, tt.args)
	}
}

// One credential is sent, by one precedence: a flag beats the environment;
// from the same place, member calls (check) use the member certificate and
// other calls (status) the token; with both set, stderr says which was used.
func TestCLICredentialPrecedence(t *testing.T) {
	fake, addr, caFile := startCLIFake(t)
	// The fake's own certificate (from the CA it trusts) serves as the client's.
	files, err := attestation.EnsureDevTLS(filepath.Dir(caFile), "n1", []string{"127.0.0.1"}, time.Now())
	require.NoError(t, err)
	base := map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": caFile}
	with := func(kv ...string) map[string]string {
		env := maps.Clone(base)
		for i := 0; i < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	bothEnv := with("TRUSTFED_TOKEN", "tf_env", "TRUSTFED_CERT", files.CertFile, "TRUSTFED_KEY", files.KeyFile)
	check := []string{"check", "--from", "acme", "--to", "globex", "--action", "discovery"}
	cert := "cert:" + certCN(t, files.CertFile)

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string // credential the server saw
		note string // what stderr says, "" = nothing
	}{
		{"env token only", with("TRUSTFED_TOKEN", "tf_env"), check, "Bearer tf_env", ""},
		{"env cert only", with("TRUSTFED_CERT", files.CertFile, "TRUSTFED_KEY", files.KeyFile), []string{"status"}, cert, ""},
		{"both in env, member call", bothEnv, check, cert, "note: using the member certificate from TRUSTFED_CERT; the bearer token from TRUSTFED_TOKEN is not sent"},
		{"both in env, other call", bothEnv, []string{"status"}, "Bearer tf_env", "note: using the bearer token from TRUSTFED_TOKEN; the member certificate from TRUSTFED_CERT is not sent"},
		{"token flag beats env cert", bothEnv, append([]string{"--token", "tf_flag"}, check...), "Bearer tf_flag", "note: using the bearer token from --token; the member certificate from TRUSTFED_CERT is not sent"},
		{"cert flag beats env token", with("TRUSTFED_TOKEN", "tf_env"), []string{"--cert", files.CertFile, "--key", files.KeyFile, "status"}, cert, "note: using the member certificate from --cert; the bearer token from TRUSTFED_TOKEN is not sent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake.takeAuth()
			code, stdout, stderr := runCLI(tc.env, tc.args...)
			require.Equal(t, exitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
			require.Equal(t, []string{tc.want}, fake.takeAuth())
			if tc.note == "" {
				require.Empty(t, stderr)
			} else {
				require.Contains(t, stderr, tc.note)
			}
		})
	}
	_, help, _ := runCLI(nil, "--help")
	require.Contains(t, help, "Credentials: a bearer token")
}

func certCN(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	c, err := x509.ParseCertificate(block.Bytes)
	require.NoError(t, err)
	return c.Subject.CommonName
}

// --max-staleness travels as the trustfed-max-staleness metadata the
// server bounds stale reads with; without it nothing is sent.
func TestCLIMaxStaleness(t *testing.T) {
	fake, addr, caFile := startCLIFake(t)
	env := map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": caFile, "TRUSTFED_TOKEN": "t"}
	code, _, stderr := runCLI(env, "org", "list", "--stale", "--max-staleness", "5s")
	require.Equal(t, exitOK, code, stderr)
	code, _, stderr = runCLI(env, "org", "list", "--stale")
	require.Equal(t, exitOK, code, stderr)
	fake.mu.Lock()
	defer fake.mu.Unlock()
	require.Equal(t, []string{"5s", "5s"}, fake.staleness, "two pages with the bound, then none without it")
}
