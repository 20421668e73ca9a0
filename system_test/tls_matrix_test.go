package system_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// localAddrs records the local addresses of the connections a probe made,
// so its refusals can be found in the audit log by their peer address.
type localAddrs struct {
	mu    sync.Mutex
	addrs []string
}

func (l *localAddrs) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	if err == nil {
		l.mu.Lock()
		l.addrs = append(l.addrs, c.LocalAddr().String())
		l.mu.Unlock()
	}
	return c, err
}

func (l *localAddrs) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.addrs...)
}

// raftProbe is the client side of a Raft transport dialing with a chosen
// TLS configuration (nil: plaintext).
type raftProbe struct {
	net.Listener
	tls   *tls.Config
	local localAddrs
}

func (p *raftProbe) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := p.local.dial(ctx, "tcp", string(addr))
	if err != nil || p.tls == nil {
		return c, err
	}
	tc := tls.Client(c, p.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

func (p *raftProbe) Addr() net.Addr { return p.Listener.Addr() }

// raftRequestVote sends one RequestVote (stale term: harmless) to a
// server's Raft port with raft's own transport; it returns the local
// addresses used and the RPC's error (nil: Raft answered).
func raftRequestVote(t *testing.T, target string, cfg *tls.Config) ([]string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &raftProbe{Listener: ln, tls: cfg}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: p, MaxPool: 1, Timeout: 5 * time.Second, Logger: hclog.NewNullLogger()})
	defer trans.Close()
	var resp raft.RequestVoteResponse
	err = trans.RequestVote("n1", raft.ServerAddress(target), &raft.RequestVoteRequest{
		RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("probe"), Addr: []byte(ln.Addr().String())},
	}, &resp)
	if err == nil && resp.Term == 0 {
		err = errors.New("raft answered with term 0")
	}
	return p.local.list(), err
}

// grpcCall lists organisations with the admin token over a connection with
// the given transport credentials; it returns the local addresses used and
// the error (nil: the handler ran).
func grpcCall(t *testing.T, addr, token string, creds credentials.TransportCredentials) ([]string, error) {
	t.Helper()
	var local localAddrs
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return local.dial(ctx, "tcp", a) }))
	require.NoError(t, err)
	defer conn.Close()
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token), 3*time.Second)
	defer cancel()
	_, err = trustfedv1.NewRegistryServiceClient(conn).ListOrganizations(ctx, &trustfedv1.ListOrganizationsRequest{})
	return local.list(), err
}

// restCall GETs /v1/organizations with the admin token over TLS with cfg
// (nil: plain HTTP); it returns the local addresses used, the status (0
// when there was no answer) and the error.
func restCall(t *testing.T, addr, token string, cfg *tls.Config) ([]string, int, error) {
	t.Helper()
	var local localAddrs
	scheme := "https"
	if cfg == nil {
		scheme = "http"
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DialContext: local.dial, DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, scheme+"://"+addr+"/v1/organizations", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return local.list(), 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return local.list(), resp.StatusCode, nil
	}
	return local.list(), resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
}

// authFailures reads every AUTH_FAILURE entry in the newest checkpoint.
func authFailures(t *testing.T, c *client.Client) ([]*trustfedv1.AuditAuthFailure, error) {
	var out []*trustfedv1.AuditAuthFailure
	token := ""
	for {
		resp, err := c.Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{Type: "AUTH_FAILURE", PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, r := range resp.Records {
			out = append(out, r.Entry.AuthFailure)
		}
		if token = resp.NextPageToken; token == "" {
			return out, nil
		}
	}
}

// requireNotAudited fails t if an AUTH_FAILURE entry came from one of the
// control connections' local addresses (they carried good credentials).
func requireNotAudited(t *testing.T, c *client.Client, local []string) {
	t.Helper()
	afs, err := authFailures(t, c)
	require.NoError(t, err)
	for _, af := range afs {
		require.NotContains(t, local, af.Peer, "the control connection was audited as a refusal: %v", af)
	}
}

// waitAudited waits until the audit log holds an AUTH_FAILURE of method
// from one of peers whose reason holds want.
func waitAudited(t *testing.T, c *client.Client, method string, peers []string, want string) *trustfedv1.AuditAuthFailure {
	t.Helper()
	require.NotEmpty(t, peers, "the probe made no connection")
	var found *trustfedv1.AuditAuthFailure
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%s refusal of %v audited with %q", method, peers, want), func() error {
		afs, err := authFailures(t, c)
		if err != nil {
			return err
		}
		var near []string
		for _, af := range afs {
			for _, p := range peers {
				if af.Peer != p {
					continue
				}
				if af.Method == method && strings.Contains(af.Reason, want) {
					found = af
					return nil
				}
				near = append(near, af.Method+" "+af.Reason)
			}
		}
		return fmt.Errorf("entries from these peers: %q", near)
	})
	return found
}

// The mTLS rejection matrix on a running server's three ports: every bad
// credential is refused at the TLS handshake — before Raft reads an RPC or
// a gRPC/REST handler runs (each probe carries what would otherwise work: a
// valid admin token, a well-formed Raft RPC) — and each refusal is an
// AUTH_FAILURE audit entry naming the listener ("tls:raft", "tls:grpc",
// "tls:rest"), the caller's address and the reason.
func TestMTLSRejectionMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	root := t.TempDir()
	pki := testutil.NewClusterPKI(t, root)
	args := append([]string{"-node-id", "n1", "-bootstrap", "-raft-fast-timeouts"}, loopbackPorts...)
	srv := testutil.StartServer(t, bin, filepath.Join(root, "n1"), append(args, pki.NodeFiles(t, "n1")...)...)
	token := adminToken(t, srv.DataDir)
	admin := dial(t, srv, pki.CAFile, token)
	waitServing(t, admin)

	expired, notYet := pki.ExpiredNodeCert(t, "n9"), pki.NotYetValidNodeCert(t, "n9")
	otherCA, anonymous := testutil.OtherCANodeCert(t, "n9"), pki.AnonymousCert(t)
	member, goodNode := pki.MemberCert(t, "acme-bank", "gw1"), pki.NodeCert(t, "n9")
	tls11 := func(cfg *tls.Config) *tls.Config {
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
		return cfg
	}
	type refusal struct {
		name, want string
		cfg        *tls.Config // nil: plaintext
	}
	// Refused on every port.
	common := []refusal{
		{"expired certificate", "certificate has expired", pki.ProbeTLS(t, &expired)},
		{"not yet valid certificate", "not yet valid", pki.ProbeTLS(t, &notYet)},
		{"certificate from another CA", "unknown authority", pki.ProbeTLS(t, &otherCA)},
		{"TLS 1.1", "unsupported versions", tls11(pki.ProbeTLS(t, &goodNode))},
	}

	t.Run("raft", func(t *testing.T) {
		local, err := raftRequestVote(t, srv.Addrs.RaftAddr, pki.ProbeTLS(t, &goodNode))
		require.NoError(t, err, "control: a server node's certificate reaches Raft")
		cases := append(common,
			refusal{"no certificate", "didn't provide a certificate", pki.ProbeTLS(t, nil)},
			refusal{"right CA, member identity", "does not name a trustfed server node", pki.ProbeTLS(t, &member)},
			refusal{"right CA, no identity", "does not name a trustfed server node", pki.ProbeTLS(t, &anonymous)},
			refusal{"plaintext", "does not look like a TLS handshake", nil},
		)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				local, err := raftRequestVote(t, srv.Addrs.RaftAddr, tc.cfg)
				require.Error(t, err, "Raft answered an RPC on a connection it should have refused")
				af := waitAudited(t, admin, "tls:raft", local, tc.want)
				require.Equal(t, "Unauthenticated", af.Code)
				require.Equal(t, "n1", af.NodeId)
			})
		}
		requireNotAudited(t, admin, local)
	})

	t.Run("grpc", func(t *testing.T) {
		local, err := grpcCall(t, srv.Addrs.GRPCAddr, token, credentials.NewTLS(pki.ProbeTLS(t, nil)))
		require.NoError(t, err, "control: the admin token works without a certificate")
		_, err = grpcCall(t, srv.Addrs.GRPCAddr, token, credentials.NewTLS(pki.ProbeTLS(t, &goodNode)))
		require.NoError(t, err, "control: and with a node certificate")
		cases := append(common,
			refusal{"right CA, no identity", "names no trustfed identity", pki.ProbeTLS(t, &anonymous)},
			refusal{"plaintext", "does not look like a TLS handshake", nil},
		)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				creds := insecure.NewCredentials()
				if tc.cfg != nil {
					creds = credentials.NewTLS(tc.cfg)
				}
				local, err := grpcCall(t, srv.Addrs.GRPCAddr, token, creds)
				require.Error(t, err, "the handler ran on a connection that should have been refused")
				af := waitAudited(t, admin, "tls:grpc", local, tc.want)
				require.Equal(t, "Unauthenticated", af.Code)
			})
		}
		requireNotAudited(t, admin, local)
	})

	t.Run("rest", func(t *testing.T) {
		local, status, err := restCall(t, srv.Addrs.HTTPAddr, token, pki.ProbeTLS(t, nil))
		require.NoError(t, err, "control: the admin token works over REST")
		require.Equal(t, http.StatusOK, status)
		cases := append(common,
			refusal{"right CA, no identity", "names no trustfed identity", pki.ProbeTLS(t, &anonymous)},
			refusal{"plaintext HTTP", "client sent an HTTP request to an HTTPS server", nil},
		)
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				local, status, err := restCall(t, srv.Addrs.HTTPAddr, token, tc.cfg)
				require.Error(t, err, "the handler ran on a connection that should have been refused")
				require.NotEqual(t, http.StatusOK, status)
				af := waitAudited(t, admin, "tls:rest", local, tc.want)
				require.Equal(t, "Unauthenticated", af.Code)
			})
		}
		requireNotAudited(t, admin, local)
	})

	require.NoError(t, srv.Stop(), "clean shutdown on SIGTERM")
}
