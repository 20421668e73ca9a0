package system_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
)

// Member calls (CheckInteraction, RequestAuthorization, the session
// methods, AckEvent) come only from member nodes: the caller's organisation
// is the one in its client certificate. These helpers give the system tests
// member nodes to call from, over gRPC, REST and the CLI.

// baseConfig is the address and CA of a server, without credentials.
func baseConfig(s *testutil.Server, caFile string) client.Config {
	return client.Config{Addr: s.Addrs.GRPCAddr, CACertFile: caFile, Timeout: 20 * time.Second}
}

// memberOf enrols a new member node of org through admin and returns a
// client calling s as it.
func memberOf(t testing.TB, admin *client.Client, s *testutil.Server, caFile string, fed *testutil.Federation, org string) *client.Client {
	t.Helper()
	c, _ := testutil.MemberClient(t, admin, baseConfig(s, caFile), fed, org)
	return c
}

// memberFiles writes m's certificate and key to dir and returns the CLI's
// global flags that present them (--cert, --key).
func memberFiles(t testing.TB, dir string, m *testutil.Member) []string {
	t.Helper()
	certFile := filepath.Join(dir, m.Org+"-"+m.Node+".crt")
	keyFile := filepath.Join(dir, m.Org+"-"+m.Node+".key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Leaf.Raw}), 0o600))
	require.NoError(t, attestation.SavePrivateKey(keyFile, m.Key))
	return []string{"--cert", certFile, "--key", keyFile}
}

// memberCLI enrols a new member node of org and returns the CLI's global
// flags that call as it.
func memberCLI(t testing.TB, admin *client.Client, fed *testutil.Federation, org string) []string {
	t.Helper()
	return memberFiles(t, t.TempDir(), testutil.EnrolMember(t, admin, fed, org, ""))
}

// asMember returns a copy of the dev server whose REST client presents m's
// certificate (call its do with no token).
func (d *devServer) asMember(t testing.TB, m *testutil.Member) *devServer {
	t.Helper()
	b, err := os.ReadFile(d.caFile)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(b))
	cert := m.Cert
	dm := *d
	dm.http = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
	}}}
	t.Cleanup(dm.http.CloseIdleConnections)
	return &dm
}

// memberClients enrols a new member node of org through admin and returns
// a client calling as it on each of the cluster's servers (by node id).
func (c *cluster) memberClients(t testing.TB, admin *client.Client, org string) map[string]*client.Client {
	t.Helper()
	m := testutil.EnrolMember(t, admin, c.fed, org, "")
	out := map[string]*client.Client{}
	for id, s := range c.servers {
		out[id] = m.Dial(t, baseConfig(s, c.pki.CAFile))
	}
	return out
}
