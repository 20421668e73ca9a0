package testutil

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"testing"
	"time"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Member is an enrolled member node of a test federation with a client
// certificate from the registry.
type Member struct {
	Org, Node string
	// Key is the node's ed25519 key (enrolled; the certificate's key).
	Key ed25519.PrivateKey
	// Cert is the node's client certificate (Leaf set).
	Cert tls.Certificate
	Leaf *x509.Certificate
}

// EnrolMember enrols a member node of org, with a fresh key, signed with
// org's key from fed (org must be registered with it and ACTIVE), through
// admin (a client with a token allowed to enrol: an admin's or org's
// governance token), then obtains its certificate by challenge-response.
// node "" picks a unique id.
func EnrolMember(t testing.TB, admin *client.Client, fed *Federation, org, node string) *Member {
	t.Helper()
	if node == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatalf("node id: %v", err)
		}
		node = "node-" + hex.EncodeToString(b[:])
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("member key: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := client.NewMemberEnrolment(fed.Key(org), org, node, pub, time.Now())
	if err != nil {
		t.Fatalf("enrol member %s/%s: %v", org, node, err)
	}
	if _, err := admin.Access().EnrolMemberNode(ctx, req); err != nil {
		t.Fatalf("enrol member %s/%s: %v", org, node, err)
	}
	m := &Member{Org: org, Node: node, Key: key}
	m.Renew(t, admin)
	return m
}

// Renew gets the member a new certificate through c (any client: the
// challenge-response needs no credentials).
func (m *Member) Renew(t testing.TB, c *client.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cert, leaf, err := client.RequestMemberCertificate(ctx, c, m.Org, m.Node, m.Key, 0)
	if err != nil {
		t.Fatalf("member certificate %s/%s: %v", m.Org, m.Node, err)
	}
	m.Cert, m.Leaf = cert, leaf
}

// Config returns base (the server's address and CA) set up to call as the
// member over mutual TLS: no token, the member's certificate presented.
func (m *Member) Config(base client.Config) client.Config {
	cert := m.Cert
	base.Token = ""
	base.CertFile, base.KeyFile = "", ""
	base.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	return base
}

// Dial returns a client that calls as the member (closed at the end of
// the test).
func (m *Member) Dial(t testing.TB, base client.Config) *client.Client {
	t.Helper()
	c, err := client.New(context.Background(), m.Config(base))
	if err != nil {
		t.Fatalf("member client %s/%s: %v", m.Org, m.Node, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MemberClient enrols a new member node of org (EnrolMember) and returns a
// client that calls as it; base gives the server's address and CA.
func MemberClient(t testing.TB, admin *client.Client, base client.Config, fed *Federation, org string) (*client.Client, *Member) {
	t.Helper()
	m := EnrolMember(t, admin, fed, org, "")
	return m.Dial(t, base), m
}

// MemberNode reads a member node through c (an admin or the org's
// governance client).
func MemberNode(t testing.TB, c *client.Client, org, node string) *trustfedv1.MemberNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Access().ListMemberNodes(ctx, &trustfedv1.ListMemberNodesRequest{OrganizationId: org, IncludeRemoved: true, PageSize: 1000})
	if err != nil {
		t.Fatalf("list member nodes of %s: %v", org, err)
	}
	for _, n := range resp.GetNodes() {
		if n.NodeId == node {
			return n
		}
	}
	t.Fatalf("member node %s/%s not listed", org, node)
	return nil
}
