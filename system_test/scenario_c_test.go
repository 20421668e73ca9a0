package system_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// replica is one in-process registry state machine behind real Raft (on
// disk, over loopback TCP).
type replica struct {
	id   string
	node *consensus.Node
	fsm  *state.FSM
	dir  string // its data directory
}

type replicaSM struct{ *state.FSM }

func (s replicaSM) Snapshot() (consensus.Snapshot, error) { return s.FSM.Snapshot() }

// readIndexer answers followers' read-index requests from the leader.
type readIndexer map[string]*consensus.Node

func (d readIndexer) ReadIndex(ctx context.Context, api string) (uint64, error) {
	n, ok := d[api]
	if !ok {
		return 0, fmt.Errorf("no node at %s", api)
	}
	return n.ReadIndex(ctx)
}

// Progress answers the leader's question before it promotes a joiner.
func (d readIndexer) Progress(_ context.Context, api string) (consensus.Progress, error) {
	n, ok := d[api]
	if !ok {
		return consensus.Progress{}, fmt.Errorf("no node at %s", api)
	}
	return n.Progress(), nil
}

// startReplicas starts a 3-voter Raft cluster of registry state machines in
// this process; tweaks adjust each replica's configuration and state
// machine before it starts.
func startReplicas(t *testing.T, tweaks ...func(cfg *consensus.Config, fsm *state.FSM)) []*replica {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir := readIndexer{}
	var out []*replica
	for i, id := range []string{"r1", "r2", "r3"} {
		fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, logger)
		cfg := consensus.Config{
			NodeID: id, DataDir: t.TempDir(), BindAddr: "127.0.0.1:0", APIAddr: "api-" + id + ":443",
			Bootstrap: i == 0, StateMachine: replicaSM{fsm}, LeaderClient: dir, Progress: dir, Logger: logger,
			PromotionStabilization: 100 * time.Millisecond,
			HeartbeatTimeout:       300 * time.Millisecond, ElectionTimeout: 300 * time.Millisecond,
			LeaderLeaseTimeout: 150 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		}
		for _, tweak := range tweaks {
			tweak(&cfg, fsm)
		}
		n, err := consensus.New(cfg)
		require.NoError(t, err)
		dir[cfg.APIAddr] = n
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- n.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, consensus.ErrClosed) {
				t.Errorf("replica %s: %v", id, err)
			}
			require.NoError(t, n.Close())
		})
		out = append(out, &replica{id: id, node: n, fsm: fsm, dir: cfg.DataDir})
	}
	testutil.Eventually(t, 20*time.Second, "r1 leads", func() error {
		if !out[0].node.IsLeader() {
			return errors.New("not yet")
		}
		return nil
	})
	for _, r := range out[1:] {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := out[0].node.AddNonvoter(ctx, r.id, r.node.RaftAddr(), "api-"+r.id+":443")
		require.NoError(t, err)
		cancel()
	}
	testutil.Eventually(t, 20*time.Second, "r2 and r3 promoted to voters", func() error {
		servers, err := out[0].node.Servers(context.Background())
		if err != nil {
			return err
		}
		for _, s := range servers {
			if !s.Voter {
				return fmt.Errorf("%s is not a voter yet", s.ID)
			}
		}
		return nil
	})
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// raw proposes a command straight into the Raft log, as a compromised
// server would, and returns what the state machine said.
func raw(t *testing.T, leader *consensus.Node, cmd proto.Message) error {
	t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: time.Now().UTC(), Principal: "node:compromised"})
	require.NoError(t, err)
	return rawBytes(t, leader, b)
}

func rawBytes(t *testing.T, leader *consensus.Node, b []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := leader.Apply(ctx, b)
	require.NoError(t, err, "raft itself accepts any bytes")
	return res.Response.(state.Result).Err
}

// trustDigest hashes everything that decides trust: organisations (levels,
// statuses, caps), issuers, admins and the federation policy.
func trustDigest(t *testing.T, r *state.Reader) [32]byte {
	t.Helper()
	h := sha256.New()
	orgs, _ := r.Organizations("", 1000)
	var msgs []proto.Message
	for _, o := range orgs {
		msgs = append(msgs, o)
	}
	for _, is := range r.Issuers() {
		msgs = append(msgs, is)
	}
	for _, a := range r.Admins() {
		msgs = append(msgs, a)
	}
	msgs = append(msgs, r.FederationPolicy())
	for _, k := range r.NodeKeys("") {
		msgs = append(msgs, k)
	}
	for _, m := range msgs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		require.NoError(t, err)
		h.Write(b)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// sameOnEveryReplica waits until every replica applied the leader's last
// index and returns their common trust digest.
func sameOnEveryReplica(t *testing.T, rs []*replica) [32]byte {
	t.Helper()
	want := rs[0].node.AppliedIndex()
	var digest [32]byte
	testutil.Eventually(t, 10*time.Second, "replicas converge", func() error {
		for i, r := range rs {
			if got := r.node.AppliedIndex(); got < want {
				return fmt.Errorf("%s applied %d < %d", r.id, got, want)
			}
			d := trustDigest(t, r.fsm.Store().Read())
			if i == 0 {
				digest = d
			} else if d != digest {
				return testutil.Permanent(fmt.Errorf("%s disagrees with %s", r.id, rs[0].id))
			}
		}
		return nil
	})
	return digest
}

// Scenario C (AG-783): a compromised registry server writes commands
// straight into the Raft log. Without valid signatures of a quorum of
// admins no replica changes a level, a status, an issuer, an admin or the
// policy, nor without the organisation's own signature where its
// notifications go; with them (the control case) every replica does.
func TestScenarioCForgedCommandsAreRefusedByEveryReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a Raft cluster")
	}
	rs := startReplicas(t)
	leader := rs[0].node
	fed := testutil.NewFederation(t)
	alice, bob := testutil.NewAdmin("alice"), testutil.NewAdmin("bob")
	now := time.Now().UTC()

	propose := func(signer testutil.Admin, change *trustfedv1.AdminChange) (string, []byte, error) {
		b := testutil.ChangeBytes(t, change, now)
		return state.AdminChangeID(b), b, raw(t, leader, &commandv1.ProposeAdminChange{Change: b, Approval: signer.Approve(b)})
	}
	approve := func(signer testutil.Admin, id string, b []byte) error {
		return raw(t, leader, &commandv1.ApproveAdminChange{ChangeId: id, Approval: signer.Approve(b)})
	}

	// The legitimate set-up: alice bootstraps, enrols bob, raises the quorum
	// to 2; both accredit the issuer; acme registers at level 3.
	require.NoError(t, raw(t, leader, &commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: "alice", Name: "Alice", PublicKey: alice.Public()}, ApprovalsRequired: 1}))
	_, _, err := propose(alice, bob.Enrol())
	require.NoError(t, err)
	two := uint32(2)
	_, _, err = propose(alice, testutil.Policy(&trustfedv1.FederationPolicyChange{AdminApprovalsRequired: &two}))
	require.NoError(t, err)
	id, b, err := propose(alice, testutil.Accredit(fed.Issuer()))
	require.NoError(t, err)
	require.NoError(t, approve(bob, id, b))
	reg, sig := fed.Registration("acme", 3, 3, now)
	require.NoError(t, raw(t, leader, &commandv1.RegisterOrganization{Registration: reg, Signature: sig}))
	require.NoError(t, raw(t, leader, &commandv1.ApproveOrganization{OrganizationId: "acme"}))
	before := sameOnEveryReplica(t, rs)
	org, ok := rs[2].fsm.Store().Read().Organization("acme")
	require.True(t, ok)
	require.Equal(t, uint32(3), org.DeclaredLevel)

	mallory := testutil.NewAdmin("mallory")
	mpub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	forged := func(pub []byte) *trustfedv1.AdminSignature {
		s := make([]byte, ed25519.SignatureSize)
		_, _ = rand.Read(s)
		return &trustfedv1.AdminSignature{PublicKey: pub, Signature: s}
	}
	lift := testutil.SetLevel("acme", 4)
	liftBytes := testutil.ChangeBytes(t, lift, now)
	liftID := state.AdminChangeID(liftBytes)
	revoke := testutil.ChangeBytes(t, testutil.SetStatus("acme", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED), now)

	endorse := testutil.ChangeBytes(t, testutil.EndorseNodeKey("r2", mpub, now, now.Add(time.Hour)), now)
	endorseID := state.AdminChangeID(endorse)
	attacks := []struct {
		name string
		cmd  func() error
	}{
		{"a node key endorsement signed by a key that is no admin's", func() error {
			return raw(t, leader, &commandv1.ProposeAdminChange{Change: endorse, Approval: mallory.Approve(endorse)})
		}},
		{"a node key endorsement approved by one admin of two, then by mallory", func() error {
			if err := raw(t, leader, &commandv1.ProposeAdminChange{Change: endorse, Approval: alice.Approve(endorse)}); err != nil {
				return fmt.Errorf("the proposal itself is legitimate and stays pending: %w", err)
			}
			return raw(t, leader, &commandv1.ApproveAdminChange{ChangeId: endorseID, Approval: mallory.Approve(endorse)})
		}},
		{"a change signed by a key that is no admin's", func() error {
			return raw(t, leader, &commandv1.ProposeAdminChange{Change: liftBytes, Approval: mallory.Approve(liftBytes)})
		}},
		{"a change carrying alice's key with a forged signature", func() error {
			return raw(t, leader, &commandv1.ProposeAdminChange{Change: revoke, Approval: forged(alice.Public())})
		}},
		{"a random key and signature", func() error {
			return raw(t, leader, &commandv1.ProposeAdminChange{Change: revoke, Approval: forged(mpub)})
		}},
		{"alice's real proposal, then alice approving it again", func() error {
			if err := raw(t, leader, &commandv1.ProposeAdminChange{Change: liftBytes, Approval: alice.Approve(liftBytes)}); err != nil {
				return fmt.Errorf("the proposal itself is legitimate and stays pending: %w", err)
			}
			return approve(alice, liftID, liftBytes)
		}},
		{"bob's key over other bytes", func() error {
			s := bob.Approve(revoke)
			return raw(t, leader, &commandv1.ApproveAdminChange{ChangeId: liftID, Approval: s})
		}},
		{"a second bootstrap admin", func() error {
			return raw(t, leader, &commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: "mallory", Name: "Mallory", PublicKey: mallory.Public()}, ApprovalsRequired: 1})
		}},
		{"a retired direct command type (override onboarding)", func() error {
			return rawBytes(t, leader, envelopeOfType(t, 7, []byte("acme")))
		}},
		{"a retired direct command type (accredit issuer)", func() error {
			return rawBytes(t, leader, envelopeOfType(t, 9, []byte("x")))
		}},
		{"a retired direct command type (federation policy)", func() error {
			return rawBytes(t, leader, envelopeOfType(t, 12, []byte("x")))
		}},
		{"bytes that are no envelope", func() error {
			return rawBytes(t, leader, []byte("\xff\xff\xff not a command"))
		}},
		{"acme's webhook settings signed by another key", func() error {
			return raw(t, leader, webhookSettings(t, mallory.Key, "acme", "https://mallory.example/hook", now))
		}},
	}
	for _, a := range attacks {
		err := a.cmd()
		require.Error(t, err, a.name)
		t.Logf("%s: refused: %v", a.name, err)
		require.Equal(t, before, sameOnEveryReplica(t, rs), "%s changed trust state", a.name)
	}
	for _, r := range rs {
		org, _ := r.fsm.Store().Read().Organization("acme")
		require.Equal(t, uint32(3), org.DeclaredLevel, r.id)
		require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, org.Status, r.id)
		require.Len(t, r.fsm.Store().Read().Admins(), 2, r.id)
	}

	// Control: the same pending change with bob's real approval applies on
	// every replica, so the digest above would have caught a change.
	require.NoError(t, approve(bob, liftID, liftBytes))
	require.NotEqual(t, before, sameOnEveryReplica(t, rs))
	for _, r := range rs {
		org, _ := r.fsm.Store().Read().Organization("acme")
		require.Equal(t, uint32(4), org.DeclaredLevel, r.id)
		require.Empty(t, r.fsm.Store().Read().NodeKeys(""), "%s: no node key endorsed by the forgeries", r.id)
	}
	// bob's real approval of the pending node key endorsement endorses it
	// on every replica.
	require.NoError(t, approve(bob, endorseID, endorse))
	sameOnEveryReplica(t, rs)
	for _, r := range rs {
		_, err := r.fsm.Store().Read().NodeSigningKey("r2", time.Now())
		require.NoError(t, err, r.id)
	}
	// And acme's own signature over its webhook settings is applied by every
	// replica.
	require.NoError(t, raw(t, leader, webhookSettings(t, fed.Key("acme"), "acme", "https://hooks.acme.example/trustfed", now)))
	sameOnEveryReplica(t, rs)
	for _, r := range rs {
		org, _ := r.fsm.Store().Read().Organization("acme")
		require.Equal(t, []string{"https://hooks.acme.example/trustfed"}, org.NotificationEndpoints, r.id)
	}
}

// webhookSettings is org's webhook settings (one endpoint) signed by key.
func webhookSettings(t *testing.T, key ed25519.PrivateKey, org, endpoint string, now time.Time) *commandv1.SetWebhook {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.WebhookSettings{OrganizationId: org, Endpoints: []string{endpoint}, SignTime: timestamppb.New(now)})
	require.NoError(t, err)
	return &commandv1.SetWebhook{Settings: b, Signature: attestation.Sign(key, attestation.PurposeWebhookSettings, b)}
}

// envelopeOfType is an envelope of a raw command type with any payload.
func envelopeOfType(t *testing.T, typ int32, payload []byte) []byte {
	t.Helper()
	b, err := proto.Marshal(&commandv1.Envelope{Type: commandv1.CommandType(typ), Payload: payload, Time: timestamppb.Now(), Principal: "node:compromised"})
	require.NoError(t, err)
	return b
}
