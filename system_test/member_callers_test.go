package system_test

import (
	"encoding/pem"
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
// member nodes to call from, over gRPC and the CLI (the REST gateway never
// presents a client certificate: member calls are gRPC only).

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
