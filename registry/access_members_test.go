package registry

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// directRaft applies every proposal to a real state machine at once: a
// single-node cluster without the log. The tests below need to move time
// (a challenge expires after 2 minutes), which a real Raft node stamped with
// the wall clock cannot; the whole path over real Raft and TLS is in
// system_test/members_test.go.
type directRaft struct {
	mu    sync.Mutex
	fsm   *state.FSM
	index uint64
	// behind: the node has not caught up (CaughtUp false).
	behind atomic.Bool
	// onApply, if set, sees every proposal before it is applied.
	onApply func(ctx context.Context, cmd []byte)
	// transfers counts TransferLeadership calls.
	transfers atomic.Int32
	// status, if set, is what Status reports.
	status atomic.Pointer[consensus.Status]
}

func (d *directRaft) Apply(ctx context.Context, cmd []byte) (consensus.ApplyResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.onApply != nil {
		d.onApply(ctx, cmd)
	}
	d.index++
	return consensus.ApplyResult{Index: d.index, Response: d.fsm.Apply(d.index, cmd), Term: 1}, nil
}
func (d *directRaft) LinearizableRead(context.Context) (uint64, error) { return d.index, nil }
func (d *directRaft) ReadIndex(context.Context) (uint64, error)        { return d.index, nil }
func (d *directRaft) IsLeader() bool                                   { return true }
func (d *directRaft) LeaderTerm() uint64                               { return 1 }
func (d *directRaft) Leader() (consensus.Server, bool)                 { return consensus.Server{ID: "n1"}, true }
func (d *directRaft) LastContact() time.Duration                       { return 0 }
func (d *directRaft) AddNonvoter(context.Context, string, string, string) (consensus.Server, error) {
	return consensus.Server{}, errors.New("not a cluster")
}
func (d *directRaft) Progress() consensus.Progress               { return consensus.Progress{NodeID: "n1"} }
func (d *directRaft) RemoveServer(context.Context, string) error { return errors.New("not a cluster") }
func (d *directRaft) Servers(context.Context) ([]consensus.Server, error) {
	return nil, errors.New("not a cluster")
}
func (d *directRaft) Status() consensus.Status {
	if st := d.status.Load(); st != nil {
		return *st
	}
	return consensus.Status{}
}
func (d *directRaft) CaughtUp() bool { return !d.behind.Load() }
func (d *directRaft) LeaderChanged(string) <-chan struct{} {
	return nil // the one leader never changes
}
func (d *directRaft) LeaderCall(ctx context.Context, _ string) (context.Context, context.CancelFunc) {
	return context.WithCancel(ctx)
}
func (d *directRaft) WaitApplied(context.Context, uint64) error { return nil }
func (d *directRaft) TransferLeadership(context.Context) error {
	d.transfers.Add(1)
	return errors.New("not a cluster")
}

// memberRig is a registry server over a real state machine, with a clock
// the test moves, a federation CA and two ACTIVE organisations.
type memberRig struct {
	t testing.TB
	s *Server
	// access and registry are the services under test, on s.
	access   *accessService
	registry *registryService
	raft     *directRaft
	fed      *testutil.Federation
	ca       *attestation.CA
	admin    testutil.Admin
	now      time.Time
	clock    sync.Mutex
}

func (r *memberRig) time() time.Time {
	r.clock.Lock()
	defer r.clock.Unlock()
	return r.now
}

func (r *memberRig) advance(d time.Duration) {
	r.clock.Lock()
	defer r.clock.Unlock()
	r.now = r.now.Add(d)
}

func newMemberRig(t testing.TB, withCA bool) *memberRig {
	t.Helper()
	r := &memberRig{t: t, fed: testutil.NewFederation(t), now: time.Now().UTC()}
	fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
	r.raft = &directRaft{fsm: fsm}
	cfg := Config{NodeID: "n1", Store: fsm.Store(), Raft: r.raft, Peers: NewPeers(nil), Verifier: attestation.Verifier{}, Clock: r.time, MemberCertTTL: 48 * time.Hour}
	if withCA {
		ca, err := attestation.NewCA("trustfed test CA", r.now, 30*24*time.Hour)
		require.NoError(t, err)
		r.ca, cfg.CA = ca, ca
	}
	s, err := New(cfg)
	require.NoError(t, err)
	r.s, r.access, r.registry = s, &accessService{Server: s}, &registryService{Server: s}

	_, seed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	r.must(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: "k1", PrivateSeed: seed.Seed()}})
	admin := testutil.NewAdmin("alice")
	r.must(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: admin.ID, Name: "Alice", PublicKey: admin.Public()}, ApprovalsRequired: 1})
	r.change(admin, testutil.Accredit(r.fed.Issuer()))
	for _, org := range []string{"acme", "globex"} {
		reg, sig := r.fed.Registration(org, 3, 3, r.now)
		r.must(&commandv1.RegisterOrganization{Registration: reg, Signature: sig})
		r.must(&commandv1.ApproveOrganization{OrganizationId: org})
	}
	r.admin = admin
	return r
}

func (r *memberRig) must(cmd proto.Message) {
	r.t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: r.time(), Principal: "token:test"})
	require.NoError(r.t, err)
	res, err := r.raft.Apply(context.Background(), b)
	require.NoError(r.t, err)
	require.NoError(r.t, res.Response.(state.Result).Err)
}

func (r *memberRig) change(a testutil.Admin, c *trustfedv1.AdminChange) {
	r.t.Helper()
	raw := testutil.ChangeBytes(r.t, c, r.time())
	r.must(&commandv1.ProposeAdminChange{Change: raw, Approval: a.Approve(raw)})
}

// enrol enrols org's node with a fresh key through the service.
func (r *memberRig) enrol(org, node string) ed25519.PrivateKey {
	r.t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(r.t, err)
	req, err := client.NewMemberEnrolment(r.fed.Key(org), org, node, pub, r.time())
	require.NoError(r.t, err)
	resp, err := r.access.EnrolMemberNode(context.Background(), req)
	require.NoError(r.t, err)
	require.Equal(r.t, trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE, resp.Node.Status)
	return key
}

// answer gets a challenge for org's node and signs it with key.
func (r *memberRig) answer(org, node string, key ed25519.PrivateKey) *trustfedv1.IssueMemberCertificateRequest {
	r.t.Helper()
	ch, err := r.access.GetMemberChallenge(context.Background(), &trustfedv1.GetMemberChallengeRequest{OrganizationId: org, NodeId: node})
	require.NoError(r.t, err)
	return &trustfedv1.IssueMemberCertificateRequest{
		Challenge: ch.Challenge, RegistrySignature: ch.RegistrySignature,
		NodeSignature: attestation.Sign(key, attestation.PurposeMemberChallenge, ch.Challenge),
	}
}

// certify runs the challenge-response and returns the certificate.
func (r *memberRig) certify(org, node string, key ed25519.PrivateKey) *x509.Certificate {
	r.t.Helper()
	resp, err := r.access.IssueMemberCertificate(context.Background(), r.answer(org, node, key))
	require.NoError(r.t, err)
	cert, err := attestation.ParseCertificatePEM([]byte(resp.CertificatePem))
	require.NoError(r.t, err)
	return cert
}

func requireField(t *testing.T, err error, kind error, field string) {
	t.Helper()
	require.ErrorIs(t, err, kind)
	var se *state.Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, field, se.Field, "%v", err)
}

func TestMemberChallengeResponse(t *testing.T) {
	r := newMemberRig(t, true)
	key := r.enrol("acme", "gw-1")

	resp, err := r.access.IssueMemberCertificate(context.Background(), r.answer("acme", "gw-1", key))
	require.NoError(t, err)
	cert, err := attestation.ParseCertificatePEM([]byte(resp.CertificatePem))
	require.NoError(t, err)
	require.Equal(t, string(r.ca.CertPEM), resp.CaPem)
	require.Equal(t, resp.Serial, cert.SerialNumber.Text(16))
	require.Equal(t, r.time().Add(DefaultMemberCertTTL).Truncate(time.Second), cert.NotAfter.UTC(), "24 h by default")
	require.True(t, key.Public().(ed25519.PublicKey).Equal(cert.PublicKey), "the certificate carries the enrolled key")
	pool := x509.NewCertPool()
	pool.AddCert(r.ca.Cert)
	_, err = cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: r.time(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)
	n, ok := r.s.store.Read().MemberNode("acme", "gw-1")
	require.True(t, ok)
	require.Equal(t, resp.Serial, n.LastCertificateSerial)

	p, err := r.s.auth.fromMemberCert(r.s.store.Read(), cert)
	require.NoError(t, err)
	require.Equal(t, Principal{ID: "member:acme/gw-1", Role: RoleMember, Organization: "acme", MemberNode: "gw-1"}, p)

	// A requested lifetime, within the server's maximum (48 h here).
	req := r.answer("acme", "gw-1", key)
	req.Validity = durationpb.New(time.Hour)
	resp, err = r.access.IssueMemberCertificate(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, r.time().Add(time.Hour).Truncate(time.Second), resp.NotAfter.AsTime())
	for _, v := range []time.Duration{49 * time.Hour, 30 * time.Second, -time.Hour} {
		req := r.answer("acme", "gw-1", key)
		req.Validity = durationpb.New(v)
		_, err := r.access.IssueMemberCertificate(context.Background(), req)
		requireField(t, err, state.ErrInvalidArgument, "validity")
	}
}

func TestMemberChallengeRefusals(t *testing.T) {
	r := newMemberRig(t, true)
	key := r.enrol("acme", "gw-1")
	ctx := context.Background()

	t.Run("replayed", func(t *testing.T) {
		req := r.answer("acme", "gw-1", key)
		_, err := r.access.IssueMemberCertificate(ctx, req)
		require.NoError(t, err)
		_, err = r.access.IssueMemberCertificate(ctx, req)
		requireField(t, err, state.ErrFailedPrecondition, "challenge.nonce")
		require.Contains(t, err.Error(), "challenge was already used")
	})
	t.Run("expired", func(t *testing.T) {
		req := r.answer("acme", "gw-1", key)
		r.advance(MemberChallengeTTL)
		_, err := r.access.IssueMemberCertificate(ctx, req)
		requireField(t, err, state.ErrFailedPrecondition, "challenge.expire_time")
	})
	t.Run("forged registry signature", func(t *testing.T) {
		req := r.answer("acme", "gw-1", key)
		_, forger, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		req.RegistrySignature = attestation.Sign(forger, attestation.PurposeMemberChallenge, req.Challenge)
		_, err = r.access.IssueMemberCertificate(ctx, req)
		requireField(t, err, state.ErrPermissionDenied, "registry_signature")
	})
	t.Run("challenge made by the node itself", func(t *testing.T) {
		// A challenge the registry never issued (a longer expiry), signed
		// by the node and "by the registry" with the node's key.
		b, err := proto.Marshal(&trustfedv1.MemberChallenge{OrganizationId: "acme", NodeId: "gw-1", Nonce: make([]byte, 32),
			IssueTime: timestamppb.New(r.time()), ExpireTime: timestamppb.New(r.time().Add(time.Hour)), RegistryKeyId: "k1"})
		require.NoError(t, err)
		sig := attestation.Sign(key, attestation.PurposeMemberChallenge, b)
		_, err = r.access.IssueMemberCertificate(ctx, &trustfedv1.IssueMemberCertificateRequest{Challenge: b, RegistrySignature: sig, NodeSignature: sig})
		requireField(t, err, state.ErrPermissionDenied, "registry_signature")
	})
	t.Run("tampered challenge", func(t *testing.T) {
		req := r.answer("acme", "gw-1", key)
		var ch trustfedv1.MemberChallenge
		require.NoError(t, proto.Unmarshal(req.Challenge, &ch))
		ch.ExpireTime = timestamppb.New(r.time().Add(time.Hour))
		b, err := proto.Marshal(&ch)
		require.NoError(t, err)
		req.Challenge, req.NodeSignature = b, attestation.Sign(key, attestation.PurposeMemberChallenge, b)
		_, err = r.access.IssueMemberCertificate(ctx, req)
		requireField(t, err, state.ErrPermissionDenied, "registry_signature")
	})
	t.Run("unknown registry key", func(t *testing.T) {
		req := r.answer("acme", "gw-1", key)
		var ch trustfedv1.MemberChallenge
		require.NoError(t, proto.Unmarshal(req.Challenge, &ch))
		ch.RegistryKeyId = "k2"
		req.Challenge, _ = proto.Marshal(&ch)
		_, err := r.access.IssueMemberCertificate(ctx, req)
		requireField(t, err, state.ErrPermissionDenied, "challenge.registry_key_id")
	})
	t.Run("signed by another key than the node's", func(t *testing.T) {
		_, other, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		_, err = r.access.IssueMemberCertificate(ctx, r.answer("acme", "gw-1", other))
		requireField(t, err, state.ErrPermissionDenied, "node_signature")
	})
	t.Run("signed for another purpose", func(t *testing.T) {
		req := r.answer("acme", "gw-1", key)
		req.NodeSignature = attestation.Sign(key, attestation.PurposeMemberNode, req.Challenge)
		_, err := r.access.IssueMemberCertificate(ctx, req)
		requireField(t, err, state.ErrPermissionDenied, "node_signature")
	})
	t.Run("malformed", func(t *testing.T) {
		for field, req := range map[string]*trustfedv1.IssueMemberCertificateRequest{
			"challenge":                 {},
			"challenge.organization_id": {Challenge: mustMarshal(t, &trustfedv1.MemberChallenge{NodeId: "gw-1"})},
			"challenge.node_id":         {Challenge: mustMarshal(t, &trustfedv1.MemberChallenge{OrganizationId: "acme"})},
			"challenge.nonce":           {Challenge: mustMarshal(t, &trustfedv1.MemberChallenge{OrganizationId: "acme", NodeId: "gw-1", Nonce: []byte{1}})},
		} {
			_, err := r.access.IssueMemberCertificate(ctx, req)
			requireField(t, err, state.ErrInvalidArgument, field)
		}
		_, err := r.access.IssueMemberCertificate(ctx, &trustfedv1.IssueMemberCertificateRequest{Challenge: []byte{0xff, 0xff, 0xff}})
		requireField(t, err, state.ErrInvalidArgument, "challenge")
	})
	t.Run("no challenge for an unknown node", func(t *testing.T) {
		_, err := r.access.GetMemberChallenge(ctx, &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "gw-9"})
		requireField(t, err, state.ErrNotFound, "node_id")
		_, err = r.access.GetMemberChallenge(ctx, &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "GW"})
		requireField(t, err, state.ErrInvalidArgument, "node_id")
	})
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

func TestIssueMemberCertificateWithoutCA(t *testing.T) {
	r := newMemberRig(t, false)
	key := r.enrol("acme", "gw-1")
	_, err := r.access.IssueMemberCertificate(context.Background(), r.answer("acme", "gw-1", key))
	require.ErrorIs(t, err, state.ErrFailedPrecondition)
	require.Contains(t, err.Error(), "-tls-ca-key")
}

func TestEnrolmentSignedByAnotherOrganization(t *testing.T) {
	r := newMemberRig(t, true)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	// globex signs an enrolment of a node for acme.
	req, err := client.NewMemberEnrolment(r.fed.Key("globex"), "acme", "gw-1", pub, r.time())
	require.NoError(t, err)
	_, err = r.access.EnrolMemberNode(context.Background(), req)
	requireField(t, err, state.ErrInvalidArgument, "signature")
	_, ok := r.s.store.Read().MemberNode("acme", "gw-1")
	require.False(t, ok)
	_, err = r.access.EnrolMemberNode(context.Background(), &trustfedv1.EnrolMemberNodeRequest{})
	requireField(t, err, state.ErrInvalidArgument, "enrolment")
}

// A member certificate stops authenticating on the next call once its
// organisation is suspended or revoked, its node removed or re-enrolled
// with another key, or it expired; a server node's certificate is not a
// member's.
func TestMemberCertificateAuthentication(t *testing.T) {
	r := newMemberRig(t, true)
	ctx := context.Background()
	auth := func(cert *x509.Certificate) error {
		_, err := r.s.auth.fromMemberCert(r.s.store.Read(), cert)
		return err
	}

	key := r.enrol("acme", "gw-1")
	cert := r.certify("acme", "gw-1", key)
	require.NoError(t, auth(cert))

	// Removed, then re-enrolled with a new key: the old certificate stays refused.
	_, err := r.access.RemoveMemberNode(ctx, &trustfedv1.RemoveMemberNodeRequest{OrganizationId: "acme", NodeId: "gw-1", Reason: "host lost"})
	require.NoError(t, err)
	err = auth(cert)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.Contains(t, err.Error(), "removed")
	_, err = r.access.GetMemberChallenge(ctx, &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "gw-1"})
	requireField(t, err, state.ErrFailedPrecondition, "node_id")
	key2 := r.enrol("acme", "gw-1")
	err = auth(cert)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.Contains(t, err.Error(), "not the key enrolled")
	cert2 := r.certify("acme", "gw-1", key2)
	require.NoError(t, auth(cert2))

	// Expired (checked on every call, not only at the handshake).
	r.advance(DefaultMemberCertTTL + time.Second)
	err = auth(cert2)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.Contains(t, err.Error(), "expired")
	cert3 := r.certify("acme", "gw-1", key2)
	require.NoError(t, auth(cert3))

	// Suspended, then revoked organisation.
	for _, st := range []trustfedv1.OrganizationStatus{trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED} {
		r.change(r.admin, testutil.SetStatus("acme", st))
		err = auth(cert3)
		require.ErrorIs(t, err, ErrUnauthenticated)
		require.Contains(t, err.Error(), "organization acme is "+state.OrganizationStatusName(st))
		_, err = r.access.GetMemberChallenge(ctx, &trustfedv1.GetMemberChallengeRequest{OrganizationId: "acme", NodeId: "gw-1"})
		requireField(t, err, state.ErrFailedPrecondition, "organization_id")
	}

	// Identities that are not members'.
	nodePEM, _, err := r.ca.IssueNode("n1", []string{"localhost"}, r.time(), time.Hour)
	require.NoError(t, err)
	nodeCert, err := attestation.ParseCertificatePEM(nodePEM)
	require.NoError(t, err)
	require.ErrorIs(t, auth(nodeCert), ErrUnauthenticated)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	unknownPEM, _, _, err := r.ca.IssueMember("globex", "ghost", pub, r.time(), time.Hour)
	require.NoError(t, err)
	unknown, err := attestation.ParseCertificatePEM(unknownPEM)
	require.NoError(t, err)
	err = auth(unknown)
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.Contains(t, err.Error(), "not enrolled")

	// A forwarded member is checked against the state again.
	_, err = r.s.auth.fromMember(r.s.store.Read(), "acme", "gw-1", nil)
	require.ErrorIs(t, err, ErrUnauthenticated)
}

func TestListMemberNodesService(t *testing.T) {
	r := newMemberRig(t, true)
	ctx := context.Background()
	for _, n := range []string{"a1", "a2", "a3"} {
		r.enrol("acme", n)
	}
	r.enrol("globex", "g1")
	_, err := r.access.RemoveMemberNode(ctx, &trustfedv1.RemoveMemberNodeRequest{OrganizationId: "acme", NodeId: "a2", Reason: "gone"})
	require.NoError(t, err)

	var got []string
	tok := ""
	for {
		resp, err := r.access.ListMemberNodes(ctx, &trustfedv1.ListMemberNodesRequest{OrganizationId: "acme", IncludeRemoved: true, PageSize: 1, PageToken: tok})
		require.NoError(t, err)
		for _, n := range resp.Nodes {
			got = append(got, n.NodeId)
		}
		if tok = resp.NextPageToken; tok == "" {
			break
		}
	}
	require.Equal(t, []string{"a1", "a2", "a3"}, got)
	resp, err := r.access.ListMemberNodes(ctx, &trustfedv1.ListMemberNodesRequest{})
	require.NoError(t, err)
	require.Len(t, resp.Nodes, 3, "active nodes of every organisation")

	_, err = r.access.ListMemberNodes(ctx, &trustfedv1.ListMemberNodesRequest{PageSize: -1})
	requireField(t, err, state.ErrInvalidArgument, "page_size")
	_, err = r.access.ListMemberNodes(ctx, &trustfedv1.ListMemberNodesRequest{OrganizationId: "ACME"})
	requireField(t, err, state.ErrInvalidArgument, "organization_id")
	_, err = r.access.RemoveMemberNode(ctx, &trustfedv1.RemoveMemberNodeRequest{OrganizationId: "acme", NodeId: "a1"})
	requireField(t, err, state.ErrInvalidArgument, "reason")
}
