package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSignMemberEnrolment(t *testing.T) {
	pub, orgKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	nodePub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	req, err := NewMemberEnrolment(orgKey, "acme", "gw-1", nodePub, time.Now())
	require.NoError(t, err)
	b, err := protoDeterministic(req.Enrolment)
	require.NoError(t, err)
	require.NoError(t, attestation.Verify(pub, attestation.PurposeMemberNode, b, req.Signature))
	require.Error(t, attestation.Verify(pub, attestation.PurposeMemberChallenge, b, req.Signature), "domain separated")
	_, err = SignMemberEnrolment(orgKey[:10], req.Enrolment)
	require.Error(t, err)
}

// serialServer is a TLS gRPC server that requires a client certificate from
// the CA and records the serial of the certificate each call came with.
type serialServer struct {
	trustfedv1.UnimplementedRegistryServiceServer
	mu      sync.Mutex
	serials []string
}

func (s *serialServer) GetOrganization(ctx context.Context, _ *trustfedv1.GetOrganizationRequest) (*trustfedv1.GetOrganizationResponse, error) {
	p, _ := peer.FromContext(ctx)
	info := p.AuthInfo.(credentials.TLSInfo)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serials = append(s.serials, info.State.VerifiedChains[0][0].SerialNumber.String())
	return &trustfedv1.GetOrganizationResponse{}, nil
}

func (s *serialServer) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.serials) == 0 {
		return ""
	}
	return s.serials[len(s.serials)-1]
}

// A member's certificate is renewed at 2/3 of its lifetime, or when asked;
// after a renewal the connection is re-established with the new one.
// Failed renewals are retried and keep the current certificate.
func TestMemberCredentialsRenew(t *testing.T) {
	files := newTLSFiles(t)
	ca, err := attestation.LoadCA(files.CAFile, files.CAKeyFile)
	require.NoError(t, err)
	serverCfg, err := attestation.ServerTLSConfig(files)
	require.NoError(t, err)
	serverCfg.ClientAuth = tls.RequireAndVerifyClientCert
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverCfg)))
	fake := &serialServer{}
	trustfedv1.RegisterRegistryServiceServer(srv, fake)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	var validity atomic.Int64
	validity.Store(int64(time.Hour))
	var failing atomic.Bool
	var issued atomic.Int32
	issue := func(context.Context) (tls.Certificate, *x509.Certificate, error) {
		if failing.Load() {
			return tls.Certificate{}, nil, errors.New("registry unreachable")
		}
		issued.Add(1)
		certPEM, _, _, err := ca.IssueMember("acme", "gw-1", pub, time.Now(), time.Duration(validity.Load()))
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		leaf, err := attestation.ParseCertificatePEM(certPEM)
		if err != nil {
			return tls.Certificate{}, nil, err
		}
		return tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}, leaf, nil
	}
	ctx := context.Background()
	creds, err := newMemberCredentials(ctx, "acme", "gw-1", issue, time.Now)
	require.NoError(t, err)
	t.Cleanup(func() { _ = creds.Close() })
	first := creds.Certificate().SerialNumber.String()

	c, err := New(ctx, creds.Configure(Config{Addr: ln.Addr().String(), CACertFile: files.CAFile, Timeout: 10 * time.Second}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	call := func() error {
		_, err := c.Registry().GetOrganization(ctx, &trustfedv1.GetOrganizationRequest{OrganizationId: "acme"})
		return err
	}
	require.NoError(t, call())
	require.Equal(t, first, fake.last())

	// Asked to renew: a new certificate, and the next calls come with it.
	creds.Renew()
	waitFor(t, 10*time.Second, "renewed", func() error {
		if creds.Certificate().SerialNumber.String() == first {
			return errors.New("same certificate")
		}
		return nil
	})
	second := creds.Certificate().SerialNumber.String()
	waitFor(t, 10*time.Second, "calls present the renewed certificate", func() error {
		if err := call(); err != nil {
			return err
		}
		if got := fake.last(); got != second {
			return fmt.Errorf("server saw %s", got)
		}
		return nil
	})

	// A failed renewal keeps the current certificate and is retried.
	failing.Store(true)
	creds.Renew()
	waitFor(t, 10*time.Second, "renewal failed", func() error {
		if creds.Err() == nil {
			return errors.New("no error yet")
		}
		return nil
	})
	require.Equal(t, second, creds.Certificate().SerialNumber.String())
	require.NoError(t, call())
	failing.Store(false)
	waitFor(t, 10*time.Second, "renewal retried", func() error {
		if creds.Err() != nil || creds.Certificate().SerialNumber.String() == second {
			return errors.New("not renewed yet")
		}
		return nil
	})

	// Renewal at 2/3 of the lifetime: a 3 s certificate is replaced after
	// about 2 s, without being asked.
	validity.Store(int64(3 * time.Second))
	creds.Renew()
	waitFor(t, 10*time.Second, "short certificate", func() error {
		if d := time.Until(creds.Certificate().NotAfter); d > 4*time.Second {
			return fmt.Errorf("expires in %v", d)
		}
		return nil
	})
	short := creds.Certificate().SerialNumber.String()
	n := issued.Load()
	waitFor(t, 10*time.Second, "renewed before expiry", func() error {
		if issued.Load() == n || creds.Certificate().SerialNumber.String() == short {
			return errors.New("not renewed yet")
		}
		return nil
	})
	require.True(t, time.Now().Before(creds.Certificate().NotAfter))

	// Close stops the renewals.
	require.NoError(t, creds.Close())
	n = issued.Load()
	creds.Renew()
	require.Equal(t, n, issued.Load())
}

func protoDeterministic(m *trustfedv1.MemberNodeEnrolment) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}
