package system_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
)

const migrationOrigin = "trustfed.test/audit"

// TestRegistrySeedRetiredFromDisk: a cluster created before node keys (its
// registry key's seed in the replicated state, PUT_SIGNING_KEY, as older
// versions did) signs a decision and a checkpoint with it; then a node key
// is endorsed and RETIRE_REGISTRY_SEED applied (the leader proposes it once
// node keys are in force). After the next snapshot, log compaction and the
// reuse of the freed pages, no file of any replica's data directory —
// raft.db, the snapshots, audit.db — holds the seed or the expanded private
// key; the registry key stays in the
// key history, so the old decision and checkpoint still verify, while a
// decision signed with the (stolen) seed dated after node keys took over is
// refused. Real Raft on disk, in process (an older server is needed to
// create the seed; this binary never does).
func TestRegistrySeedRetiredFromDisk(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Raft nodes")
	}
	logs := map[string]*audit.Log{}
	rs := startReplicas(t, func(cfg *consensus.Config, fsm *state.FSM) {
		cfg.TrailingLogs = 2 // compact everything but the last entries at each snapshot
		l, err := audit.Open(filepath.Join(cfg.DataDir, "audit.db"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = l.Close() }) // after the node stops (cleanups run last first)
		require.NoError(t, fsm.AttachAudit(registry.AuditLog{Log: l}))
		logs[cfg.NodeID] = l
	})
	leader := rs[0].node
	_, seedKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	registryID := attestation.Fingerprint(seedKey.Public().(ed25519.PublicKey))
	require.NoError(t, raw(t, leader, &commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: registryID, PrivateSeed: seedKey.Seed()}}))
	admin := testutil.NewAdmin("alice")
	require.NoError(t, raw(t, leader, &commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: admin.ID, Name: "Alice", PublicKey: admin.Public()}, ApprovalsRequired: 1}))

	// What the registry key signed while it was the cluster's key.
	before := time.Now().UTC()
	oldDecision := legacyDecision(t, seedKey, registryID, before)
	signer, _, err := attestation.NewCheckpointSigner(migrationOrigin, seedKey)
	require.NoError(t, err)
	l1 := logs["r1"]
	oldNote, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: migrationOrigin, Size: l1.Size(), Root: l1.Root()}, signer)
	require.NoError(t, err)
	require.NoError(t, raw(t, leader, &commandv1.PutCheckpoint{Note: oldNote}))

	// Node keys come in force; the registry seed is retired.
	nodePub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	now := time.Now().UTC()
	change := testutil.ChangeBytes(t, testutil.EndorseNodeKey("r1", nodePub, now.Add(-time.Minute), now.Add(time.Hour)), now)
	require.NoError(t, raw(t, leader, &commandv1.ProposeAdminChange{Change: change, Approval: admin.Approve(change)}))
	require.NoError(t, raw(t, leader, &commandv1.RetireRegistrySeed{}))
	for i := range 6 { // entries after the retirement, so compaction reaches past the seed's entry
		fillerOnLeader(t, rs, &commandv1.ReportDivergence{NodeId: "r1", Index: uint64(i + 1), Reason: "before the snapshot"})
	}
	testutil.Eventually(t, 20*time.Second, "every replica retired the seed", func() error {
		for _, r := range rs {
			if r.fsm.Store().Read().RegistrySeedHeld() {
				return fmt.Errorf("%s still holds the seed", r.id)
			}
		}
		return nil
	})
	for _, r := range rs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, r.node.Snapshot(ctx), r.id)
		cancel()
	}
	// Compaction deleted the PUT_SIGNING_KEY entry, but bbolt keeps a freed
	// page's bytes until it reuses the page (docs/keys.md): later writes do.
	for i := range 200 {
		fillerOnLeader(t, rs, &commandv1.ReportDivergence{NodeId: "r1", Index: uint64(i + 1), Reason: "filler"})
	}

	secrets := map[string][]byte{"seed": seedKey.Seed(), "expanded key": seedKey}
	for _, r := range rs {
		var seen []string
		require.NoError(t, filepath.WalkDir(r.dir, func(p string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			seen = append(seen, p)
			for what, secret := range secrets {
				require.False(t, bytes.Contains(b, secret), "%s holds the retired registry key's %s", p, what)
			}
			return nil
		}))
		for _, want := range []string{"raft.db", "state.bin", "audit.db"} {
			require.True(t, slices.ContainsFunc(seen, func(p string) bool { return strings.HasSuffix(p, want) }), "%s: the scan read no %s: %v", r.id, want, seen)
		}
	}

	// The key history still verifies what the registry key signed before.
	published, err := rs[1].fsm.Store().Read().PublishedKeys()
	require.NoError(t, err)
	keys := attestation.DecisionKeys{}
	for _, k := range published {
		keys[k.KeyId] = k
	}
	require.Contains(t, keys, registryID)
	// A decision of that era is signed by one key: a verifier accepts it
	// only when it allows single-node decisions.
	legacyOK := attestation.VerifyOptions{AllowSingleNode: true}
	_, err = attestation.VerifyDecisionWith(oldDecision, keys, before, legacyOK)
	require.NoError(t, err, "a decision the registry key signed before node keys keeps verifying")
	vkey, err := attestation.CheckpointVerifierKey(migrationOrigin, keys[registryID].PublicKey)
	require.NoError(t, err)
	_, err = attestation.OpenCheckpoint(oldNote, migrationOrigin, vkey)
	require.NoError(t, err, "a checkpoint the registry key signed keeps verifying with its public key")
	forged := legacyDecision(t, seedKey, registryID, time.Now().UTC())
	_, err = attestation.VerifyDecisionWith(forged, keys, time.Now(), legacyOK)
	require.True(t, errors.Is(err, attestation.ErrDecisionKey), "a copy of the retired seed signs nothing new: %v", err)
}

// legacyDecision is a decision signed with the registry key at decidedAt.
func legacyDecision(t *testing.T, key ed25519.PrivateKey, keyID string, decidedAt time.Time) *trustfedv1.CheckInteractionResponse {
	t.Helper()
	st := &trustfedv1.DecisionStatement{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping",
		Decision: trustfedv1.Decision_DECISION_ALLOW, KeyId: keyID,
		DecidedAt: timestamppb.New(decidedAt), ValidUntil: timestamppb.New(decidedAt.Add(5 * time.Minute))}
	raw, sig, err := attestation.SignDecision(key, st)
	require.NoError(t, err)
	return &trustfedv1.CheckInteractionResponse{Decision: st.Decision, KeyId: keyID, DecidedAt: st.DecidedAt, ValidUntil: st.ValidUntil,
		Statement: raw, Signature: sig}
}

// fillerOnLeader commits cmd (a filler entry: committing it twice changes
// nothing) through whichever replica leads now, again after a leadership
// change: a loaded machine can move the leadership of in-process replicas
// with fast timeouts, and a filler must not fail the test for it.
func fillerOnLeader(t *testing.T, rs []*replica, cmd proto.Message) {
	t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: time.Now().UTC(), Principal: "node:compromised"})
	require.NoError(t, err)
	testutil.Eventually(t, 30*time.Second, "a filler entry committed", func() error {
		for _, r := range rs {
			if !r.node.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := r.node.Apply(ctx, b)
			return err
		}
		return errors.New("no leader")
	})
}
