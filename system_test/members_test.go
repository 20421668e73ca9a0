package system_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// requireCode checks a gRPC error's code and that its message holds want.
func requireCode(t *testing.T, err error, code codes.Code, want string) {
	t.Helper()
	require.Error(t, err)
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), "%v", err)
	require.Contains(t, st.Message(), want)
}

// Member nodes against a dev server, over real mutual TLS: enrolled by their
// organisation's signature, certified by challenge-response, authenticated
// by their certificate on every call, and refused as soon as their node is
// removed or re-enrolled or their organisation suspended or revoked.
func TestMemberNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d, admin, fed := startFederation(t)
	for _, org := range []string{"acme", "globex", "initech"} {
		enrol(t, admin, fed, org, 3)
	}
	base := client.Config{Addr: d.srv.Addrs.GRPCAddr, CACertFile: d.caFile, Timeout: 20 * time.Second}
	check := func(c *client.Client, from string) error {
		_, err := c.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: "globex", Action: "ping"})
		return err
	}
	// anonymous calls the public methods without any credentials.
	anonymous, err := client.New(ctxT(t), base)
	require.NoError(t, err)
	t.Cleanup(func() { _ = anonymous.Close() })

	t.Run("a member calls as itself over mTLS", func(t *testing.T) {
		m := testutil.EnrolMember(t, admin, fed, "acme", "gw-1")
		mc := m.Dial(t, base)
		require.NoError(t, check(mc, ""), "the organisation comes from the certificate")
		require.NoError(t, check(mc, "acme"))
		requireCode(t, check(mc, "globex"), codes.PermissionDenied, "acme")
		// The refusal is audited under both organisations: acme sees what
		// its node tried, globex that someone tried to act as it.
		testutil.Eventually(t, 30*time.Second, "the refusal is in globex's audit view", func() error {
			resp, err := admin.Audit().ListAuditEntries(ctxT(t), &trustfedv1.ListAuditEntriesRequest{OrganizationId: "globex", Type: "AUTH_FAILURE", PageSize: 100})
			if err != nil {
				return err
			}
			for _, r := range resp.Records {
				af := r.Entry.GetAuthFailure()
				if af.GetCode() == codes.PermissionDenied.String() && strings.Contains(af.Identity, "acme/gw-1") {
					if !slices.Equal(r.Entry.OrganizationIds, []string{"acme", "globex"}) {
						return testutil.Permanent(fmt.Errorf("refusal filed under %v, want acme and globex", r.Entry.OrganizationIds))
					}
					return nil
				}
			}
			return errors.New("no PermissionDenied entry of acme/gw-1 yet")
		})
		n := testutil.MemberNode(t, admin, "acme", "gw-1")
		require.Equal(t, m.Leaf.SerialNumber.Text(16), n.LastCertificateSerial)
		require.Equal(t, trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE, n.Status)
		// Renewing is asking again; both certificates work until they expire.
		old := m.Cert
		m.Renew(t, anonymous)
		require.NotEqual(t, old.Leaf.SerialNumber, m.Leaf.SerialNumber)
		require.NoError(t, check(m.Dial(t, base), ""))
	})

	t.Run("a replayed challenge response is refused", func(t *testing.T) {
		m := testutil.EnrolMember(t, admin, fed, "acme", "gw-replay")
		ch, err := anonymous.Access().GetMemberChallenge(ctxT(t), &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "gw-replay"})
		require.NoError(t, err)
		req := &trustfedv1.IssueMemberCertificateRequest{Challenge: ch.Challenge, RegistrySignature: ch.RegistrySignature,
			NodeSignature: attestation.Sign(m.Key, attestation.PurposeMemberChallenge, ch.Challenge)}
		_, err = anonymous.Access().IssueMemberCertificate(ctxT(t), req)
		require.NoError(t, err)
		_, err = anonymous.Access().IssueMemberCertificate(ctxT(t), req)
		requireCode(t, err, codes.FailedPrecondition, "challenge was already used")
	})

	t.Run("a forged registry signature is refused", func(t *testing.T) {
		m := testutil.EnrolMember(t, admin, fed, "acme", "gw-forge")
		ch, err := anonymous.Access().GetMemberChallenge(ctxT(t), &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "gw-forge"})
		require.NoError(t, err)
		_, forger, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		_, err = anonymous.Access().IssueMemberCertificate(ctxT(t), &trustfedv1.IssueMemberCertificateRequest{Challenge: ch.Challenge,
			RegistrySignature: attestation.Sign(forger, attestation.PurposeMemberChallenge, ch.Challenge),
			NodeSignature:     attestation.Sign(m.Key, attestation.PurposeMemberChallenge, ch.Challenge)})
		requireCode(t, err, codes.PermissionDenied, "registry_signature")
		// And a challenge answered with another key than the node's.
		_, err = anonymous.Access().IssueMemberCertificate(ctxT(t), &trustfedv1.IssueMemberCertificateRequest{Challenge: ch.Challenge,
			RegistrySignature: ch.RegistrySignature, NodeSignature: attestation.Sign(forger, attestation.PurposeMemberChallenge, ch.Challenge)})
		requireCode(t, err, codes.PermissionDenied, "node_signature")
	})

	t.Run("an enrolment signed with another organisation's key is refused", func(t *testing.T) {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		req, err := client.NewMemberEnrolment(fed.Key("globex"), "acme", "gw-spoof", pub, time.Now())
		require.NoError(t, err)
		_, err = admin.Access().EnrolMemberNode(ctxT(t), req)
		requireCode(t, err, codes.InvalidArgument, "signature")
	})

	t.Run("a self-signed member certificate is refused at the handshake", func(t *testing.T) {
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		uri, err := url.Parse(attestation.MemberSPIFFEID("acme", "gw-1"))
		require.NoError(t, err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gw-1"},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			URIs: []*url.URL{uri},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
		require.NoError(t, err)
		self := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
		cfg := base
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &self, nil }
		c, err := client.New(ctxT(t), cfg)
		require.NoError(t, err)
		defer c.Close()
		err = check(c, "acme")
		require.Equal(t, codes.Unavailable, status.Code(err), "refused before any handler: %v", err)
	})

	t.Run("a removed node's certificate is refused on the next call", func(t *testing.T) {
		m := testutil.EnrolMember(t, admin, fed, "acme", "gw-2")
		mc := m.Dial(t, base)
		require.NoError(t, check(mc, ""))
		_, err := admin.Access().RemoveMemberNode(ctxT(t), &trustfedv1.RemoveMemberNodeRequest{OrganizationId: "acme", NodeId: "gw-2", Reason: "host decommissioned"})
		require.NoError(t, err)
		requireCode(t, check(mc, ""), codes.Unauthenticated, "removed")
		_, err = anonymous.Access().GetMemberChallenge(ctxT(t), &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "gw-2"})
		requireCode(t, err, codes.FailedPrecondition, "removed")

		// Enrolled again with a new key: the old certificate stays refused,
		// a new one works.
		again := testutil.EnrolMember(t, admin, fed, "acme", "gw-2")
		requireCode(t, check(mc, ""), codes.Unauthenticated, "not the key enrolled")
		require.NoError(t, check(again.Dial(t, base), ""))
	})

	t.Run("a suspended or revoked organisation's certificates are refused on the next call", func(t *testing.T) {
		suspended := testutil.EnrolMember(t, admin, fed, "initech", "gw-1")
		revoked := testutil.EnrolMember(t, admin, fed, "globex", "gw-1")
		sc, rc := suspended.Dial(t, base), revoked.Dial(t, base)
		require.NoError(t, check(sc, ""))
		_, err := rc.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "globex"})
		require.NoError(t, err)

		d.admins.apply(t, testutil.SetStatus("initech", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), admin)
		requireCode(t, check(sc, ""), codes.Unauthenticated, "organization initech is SUSPENDED")
		_, err = anonymous.Access().GetMemberChallenge(ctxT(t), &trustfedv1.GetMemberChallengeRequest{OrganizationId: "initech", NodeId: "gw-1"})
		requireCode(t, err, codes.FailedPrecondition, "SUSPENDED")

		d.admins.apply(t, testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED), admin)
		_, err = rc.Registry().GetOrganization(ctxT(t), &trustfedv1.GetOrganizationRequest{OrganizationId: "globex"})
		requireCode(t, err, codes.Unauthenticated, "organization globex is REVOKED")
	})
}

// The CLI path: keygen on the node, enrolment signed with the organisation
// key, the certificate by challenge-response, a member call with --cert and
// --key, removal.
func TestMemberNodesCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	d, admin, fed := startFederation(t)
	enrol(t, admin, fed, "acme", 3)
	enrol(t, admin, fed, "globex", 3)
	dir := t.TempDir()
	orgKey := filepath.Join(dir, "acme.key")
	require.NoError(t, attestation.SavePrivateKey(orgKey, fed.Key("acme")))
	nodeKey, nodeCert := filepath.Join(dir, "gw-1.key"), filepath.Join(dir, "gw-1.crt")

	out, errOut, code := d.cli(t, "", "keygen", "--out", nodeKey)
	require.Equal(t, 0, code, "%s%s", out, errOut)
	out, errOut, code = d.cli(t, d.token, "member", "enrol", "acme", "gw-1", "--org-key", orgKey, "--node-pubkey", nodeKey+".pub")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	require.Contains(t, out, "spiffe://trustfed/org/acme/member/gw-1")
	require.Contains(t, out, "active")

	// No token: the challenge-response is the credential.
	out, errOut, code = d.cli(t, "", "member", "cert", "acme", "gw-1", "--node-key", nodeKey, "--out-cert", nodeCert, "--validity", "1h")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	certPEM, err := os.ReadFile(nodeCert)
	require.NoError(t, err)
	cert, err := attestation.ParseCertificatePEM(certPEM)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), cert.NotAfter, 2*time.Minute)
	require.Contains(t, out, strings.ToLower(cert.SerialNumber.Text(16)))

	out, errOut, code = d.cli(t, "", "--cert", nodeCert, "--key", nodeKey, "check", "--from", "acme", "--to", "globex", "--action", "ping")
	require.Contains(t, []int{0, 3}, code, "a decision (ALLOW or DENY), not an error: %s%s", out, errOut)

	out, errOut, code = d.cli(t, d.token, "member", "list", "acme")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	require.Contains(t, out, "gw-1")
	out, errOut, code = d.cli(t, d.token, "member", "remove", "acme", "gw-1", "--reason", "retired")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	require.Contains(t, out, "removed")

	out, errOut, code = d.cli(t, "", "--cert", nodeCert, "--key", nodeKey, "check", "--from", "acme", "--to", "globex", "--action", "ping")
	require.Equal(t, 1, code, "%s%s", out, errOut)
	require.Contains(t, errOut, "removed")
	out, errOut, code = d.cli(t, d.token, "-o", "json", "member", "list", "acme", "--all")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	require.Contains(t, out, "MEMBER_NODE_STATUS_REMOVED")
}

// Member nodes on a three-server cluster, every server holding the CA key:
// enrolled and certified through a follower (the certificate's single use
// is decided on the leader), authenticated by every server, refused by every
// server once their organisation is suspended.
func TestMemberNodesOnEveryServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	root := t.TempDir()
	pki := testutil.NewClusterPKI(t, root)
	fed := testutil.NewFederation(t)
	args := func(id string, more ...string) []string {
		a := append([]string{"-node-id", id, "-raft-fast-timeouts", "-tls-ca-key", filepath.Join(root, "ca-key.pem")}, loopbackPorts...)
		return append(append(a, pki.NodeFiles(t, id)...), more...)
	}
	servers := map[string]*testutil.Server{}
	clients := map[string]*client.Client{}
	servers["n1"] = testutil.StartServer(t, bin, filepath.Join(root, "n1"), args("n1", "-bootstrap")...)
	token := adminToken(t, servers["n1"].DataDir)
	clients["n1"] = dial(t, servers["n1"], pki.CAFile, token)
	waitServing(t, clients["n1"])
	for _, id := range []string{"n2", "n3"} {
		servers[id] = testutil.StartServer(t, bin, filepath.Join(root, id), args(id, "-join", servers["n1"].Addrs.GRPCAddr)...)
		clients[id] = dial(t, servers[id], pki.CAFile, token)
	}
	adm := enrolAdmins(t, clients["n1"])
	all := []string{"n1", "n2", "n3"}
	testutil.Eventually(t, 60*time.Second, "3 voters, all serving", func() error {
		for _, id := range all {
			if _, err := clients[id].Registry().ListOrganizations(ctxT(t), &trustfedv1.ListOrganizationsRequest{}); err != nil {
				return err
			}
		}
		return nil
	})
	// n1's key was endorsed at bootstrap; the others sign member challenges
	// once the admins endorse theirs.
	(&cluster{servers: servers, clients: clients, admins: adm}).endorseNodeKeys(t)
	leader := (&cluster{clients: clients}).leader(t, all...)
	follower := "n2"
	if leader == follower {
		follower = "n3"
	}
	accredit(t, clients[leader], fed, adm)
	enrol(t, clients[leader], fed, "acme", 3)
	enrol(t, clients[leader], fed, "globex", 3)

	m := testutil.EnrolMember(t, clients[follower], fed, "acme", "gw-1")
	members := map[string]*client.Client{}
	for _, id := range all {
		members[id] = m.Dial(t, client.Config{Addr: servers[id].Addrs.GRPCAddr, CACertFile: pki.CAFile, Timeout: 20 * time.Second})
		_, err := members[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{ToOrganizationId: "globex", Action: "ping"})
		require.NoError(t, err, id)
	}
	require.Equal(t, m.Leaf.SerialNumber.Text(16), testutil.MemberNode(t, clients[leader], "acme", "gw-1").LastCertificateSerial)

	adm.apply(t, testutil.SetStatus("acme", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), clients[leader])
	for _, id := range all {
		// Each server authenticates against its own copy of the state: a
		// follower refuses once it has applied the suspension.
		testutil.Eventually(t, 10*time.Second, "suspension refused by "+id, func() error {
			_, err := members[id].Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{ToOrganizationId: "globex", Action: "ping"})
			if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "organization acme is SUSPENDED") {
				return fmt.Errorf("%s: %v", id, err)
			}
			return nil
		})
	}
}
