package client

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// fakeServer records what it receives.
type fakeServer struct {
	trustfedv1.UnimplementedAdminServiceServer
	trustfedv1.UnimplementedRegistryServiceServer

	mu         sync.Mutex
	auth       []string
	requestIDs []string
}

func (f *fakeServer) record(ctx context.Context, requestID string) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.auth = append(f.auth, md.Get("authorization")...)
	f.requestIDs = append(f.requestIDs, requestID)
}

func (f *fakeServer) seen() (auth, ids []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.auth...), append([]string(nil), f.requestIDs...)
}

func (f *fakeServer) ApproveOrganization(ctx context.Context, req *trustfedv1.ApproveOrganizationRequest) (*trustfedv1.ApproveOrganizationResponse, error) {
	f.record(ctx, req.GetRequestId())
	return &trustfedv1.ApproveOrganizationResponse{Organization: &trustfedv1.Organization{Id: req.GetOrganizationId()}}, nil
}

func (f *fakeServer) GetOrganization(ctx context.Context, req *trustfedv1.GetOrganizationRequest) (*trustfedv1.GetOrganizationResponse, error) {
	f.record(ctx, "")
	if req.GetOrganizationId() == "slow" {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &trustfedv1.GetOrganizationResponse{Organization: &trustfedv1.Organization{Id: req.GetOrganizationId()}}, nil
}

// startServer serves fake on 127.0.0.1:0, over TLS when files is not nil.
func startServer(t *testing.T, fake *fakeServer, files *attestation.TLSFiles) string {
	t.Helper()
	var opts []grpc.ServerOption
	if files != nil {
		cfg, err := attestation.ServerTLSConfig(*files)
		require.NoError(t, err)
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	srv := grpc.NewServer(opts...)
	trustfedv1.RegisterAdminServiceServer(srv, fake)
	trustfedv1.RegisterRegistryServiceServer(srv, fake)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func newTLSFiles(t *testing.T) attestation.TLSFiles {
	t.Helper()
	files, err := attestation.EnsureDevTLS(t.TempDir(), "n1", []string{"127.0.0.1"}, time.Now())
	require.NoError(t, err)
	return files
}

var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestClientTokenAndRequestID(t *testing.T) {
	files := newTLSFiles(t)
	fake := &fakeServer{}
	addr := startServer(t, fake, &files)
	ctx := context.Background()

	c, err := New(ctx, Config{Addr: addr, Token: "tf_secret", CACertFile: files.CAFile, Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer func() { require.NoError(t, c.Close()) }()

	req := &trustfedv1.ApproveOrganizationRequest{OrganizationId: "acme"}
	_, err = c.Admin().ApproveOrganization(ctx, req)
	require.NoError(t, err)
	require.Regexp(t, hexID, req.GetRequestId(), "filled in on the caller's message")
	first := req.GetRequestId()

	// Resending the same message keeps its id; a caller-chosen id is kept.
	_, err = c.Admin().ApproveOrganization(ctx, req)
	require.NoError(t, err)
	_, err = c.Admin().ApproveOrganization(ctx, &trustfedv1.ApproveOrganizationRequest{OrganizationId: "b", RequestId: "mine"})
	require.NoError(t, err)
	_, err = c.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: "acme"})
	require.NoError(t, err)

	auth, ids := fake.seen()
	require.Equal(t, []string{"Bearer tf_secret", "Bearer tf_secret", "Bearer tf_secret", "Bearer tf_secret"}, auth)
	require.Equal(t, []string{first, first, "mine", ""}, ids)
}

func TestClientWithNodeCertificate(t *testing.T) {
	files := newTLSFiles(t)
	addr := startServer(t, &fakeServer{}, &files)
	c, err := New(context.Background(), Config{Addr: addr, CACertFile: files.CAFile, CertFile: files.CertFile, KeyFile: files.KeyFile})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Registry().GetOrganization(context.Background(), &trustfedv1.GetOrganizationRequest{OrganizationId: "x"})
	require.NoError(t, err)
}

func TestClientRejectsUntrustedServer(t *testing.T) {
	files := newTLSFiles(t)
	addr := startServer(t, &fakeServer{}, &files)
	other := newTLSFiles(t)

	c, err := New(context.Background(), Config{Addr: addr, Token: "t", CACertFile: other.CAFile, Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Registry().GetOrganization(context.Background(), &trustfedv1.GetOrganizationRequest{OrganizationId: "x"})
	require.Equal(t, codes.Unavailable, status.Code(err))
}

func TestClientTokenNeedsTLS(t *testing.T) {
	fake := &fakeServer{}
	addr := startServer(t, fake, nil)

	// Plaintext is refused for a token that requires transport security...
	_, err := New(context.Background(), Config{
		Addr:        addr,
		DialOptions: []grpc.DialOption{grpc.WithPerRPCCredentials(bearerToken{token: "t", secure: true})},
		Insecure:    true,
	})
	require.ErrorContains(t, err, "transport level security")

	// ...but allowed in the explicit test-only Insecure mode.
	c, err := New(context.Background(), Config{Addr: addr, Token: "t", Insecure: true})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Registry().GetOrganization(context.Background(), &trustfedv1.GetOrganizationRequest{OrganizationId: "x"})
	require.NoError(t, err)
	auth, _ := fake.seen()
	require.Equal(t, []string{"Bearer t"}, auth)
}

func TestClientTimeout(t *testing.T) {
	addr := startServer(t, &fakeServer{}, nil)
	c, err := New(context.Background(), Config{Addr: addr, Insecure: true, Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Registry().GetOrganization(context.Background(), &trustfedv1.GetOrganizationRequest{OrganizationId: "slow"})
	require.Equal(t, codes.DeadlineExceeded, status.Code(err))
	require.True(t, IsUnknownOutcome(err))
}

func TestNewValidation(t *testing.T) {
	files := newTLSFiles(t)
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"insecure with ca", Config{Insecure: true, CACertFile: files.CAFile}},
		{"token with space", Config{CACertFile: files.CAFile, Token: "a b"}},
		{"token with newline", Config{CACertFile: files.CAFile, Token: "ab\n"}},
		{"missing ca file", Config{CACertFile: filepath.Join(t.TempDir(), "none.pem")}},
		{"cert without key", Config{CACertFile: files.CAFile, CertFile: files.CertFile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(ctx, tt.cfg)
			require.Error(t, err)
		})
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := New(cancelled, Config{CACertFile: files.CAFile})
	require.ErrorIs(t, err, context.Canceled)
}

func TestEnsureRequestID(t *testing.T) {
	require.Empty(t, EnsureRequestID(nil))
	require.Empty(t, EnsureRequestID(&trustfedv1.GetOrganizationRequest{}), "reads have no request_id")
	var nilReq *trustfedv1.SignAgreementRequest
	require.Empty(t, EnsureRequestID(nilReq))
	req := &trustfedv1.UpdateOrganizationRequest{}
	id := EnsureRequestID(req)
	require.Regexp(t, hexID, id)
	require.Equal(t, id, EnsureRequestID(req))
	require.NotEqual(t, NewRequestID(), NewRequestID())
}

func TestConfigFromEnv(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("  tf_from_file\n"), 0o600))
	emptyFile := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(emptyFile, []byte("\n"), 0o600))

	tests := []struct {
		name    string
		env     map[string]string
		want    Config
		wantErr bool
	}{
		{"defaults", nil, Config{Addr: DefaultAddr, Timeout: DefaultTimeout}, false},
		{"all", map[string]string{EnvAddr: "h:1", EnvToken: "tok", EnvCACert: "/ca.pem"},
			Config{Addr: "h:1", Token: "tok", CACertFile: "/ca.pem", Timeout: DefaultTimeout}, false},
		{"token file", map[string]string{EnvTokenFile: tokenFile},
			Config{Addr: DefaultAddr, Token: "tf_from_file", Timeout: DefaultTimeout}, false},
		{"token wins over file", map[string]string{EnvToken: "tok", EnvTokenFile: "/nonexistent"},
			Config{Addr: DefaultAddr, Token: "tok", Timeout: DefaultTimeout}, false},
		{"missing token file", map[string]string{EnvTokenFile: "/nonexistent"}, Config{}, true},
		{"empty token file", map[string]string{EnvTokenFile: emptyFile}, Config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{EnvAddr, EnvToken, EnvTokenFile, EnvCACert} {
				t.Setenv(k, tt.env[k])
			}
			got, err := ConfigFromEnv()
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestRetryUnknown(t *testing.T) {
	retryBaseDelay = time.Millisecond
	t.Cleanup(func() { retryBaseDelay = 100 * time.Millisecond })

	tests := []struct {
		name      string
		errs      []error
		wantCalls int
		wantCode  codes.Code
	}{
		{"success", []error{nil}, 1, codes.OK},
		{"retried then ok", []error{status.Error(codes.Unavailable, ""), status.Error(codes.DeadlineExceeded, ""), nil}, 3, codes.OK},
		{"not retried", []error{status.Error(codes.InvalidArgument, "")}, 1, codes.InvalidArgument},
		{"gives up", []error{
			status.Error(codes.Unavailable, ""), status.Error(codes.Unavailable, ""), status.Error(codes.Unavailable, ""),
			status.Error(codes.Unavailable, ""), status.Error(codes.Unavailable, ""), nil,
		}, 5, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := RetryUnknown(context.Background(), func(context.Context) error {
				calls++
				return tt.errs[calls-1]
			})
			require.Equal(t, tt.wantCalls, calls)
			require.Equal(t, tt.wantCode, status.Code(err))
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := RetryUnknown(ctx, func(context.Context) error {
		calls++
		cancel()
		return status.Error(codes.Unavailable, "")
	})
	require.Equal(t, 1, calls)
	require.Equal(t, codes.Unavailable, status.Code(err))
}
