package consensus

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// nodeTLS issues a node certificate (IP SAN 127.0.0.1, client and server
// auth) and returns a config trusting only this CA. ClientAuth and
// ClientCAs are left for the transport to fill in.
func (ca *testCA) nodeTLS(t *testing.T, id string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
	}
}

func TestTLSTransport(t *testing.T) {
	good := newTestCA(t, "federation-ca")
	evil := newTestCA(t, "other-ca")
	c := newCluster(t)
	c.tls["n1"] = good.nodeTLS(t, "n1")
	c.tls["n2"] = good.nodeTLS(t, "n2")
	c.tls["n3"] = good.nodeTLS(t, "n3")
	c.tls["rogue"] = evil.nodeTLS(t, "rogue")
	ctx := ctxT(t)

	n1, n2, n3 := c.threeNodes()
	nodes := []*testNode{n1, n2, n3}
	res := apply(t, "set secret 42", nodes...)
	for _, n := range nodes {
		_, err := n.LinearizableRead(ctx)
		require.NoError(t, err, n.id)
		require.Equal(t, "42", n.kv.get("secret"), n.id)
	}

	// A node whose certificate comes from another CA may be named in the
	// configuration (the majority commits that), but the handshakes fail
	// both ways, so it never receives a single entry.
	rogue := c.start("rogue", false)
	leader := waitLeader(t, nodes...)
	addCtx, cancel := ctxWithTimeout(3 * time.Second)
	defer cancel()
	_ = leader.AddVoter(addCtx, rogue.id, rogue.RaftAddr(), rogue.api) // may time out or succeed
	res = apply(t, "set rogue no", nodes...)
	require.Never(t, func() bool {
		return rogue.AppliedIndex() >= res.Index || rogue.kv.get("secret") != "" || rogue.kv.get("rogue") != ""
	}, 2*time.Second, 50*time.Millisecond, "rogue node replicated data")
	_, hasLeader := rogue.Leader()
	require.False(t, hasLeader, "rogue node heard from the leader")
	for _, n := range nodes {
		require.NoError(t, n.WaitApplied(ctx, res.Index), n.id)
	}
}
