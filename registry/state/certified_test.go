package state_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// certifiedCluster is three replicas that applied script plus the
// endorsement of three registry node keys (node keys are in force).
type certifiedCluster struct {
	cmds    [][]byte
	signers map[string]*attestation.FileSigner
	at      time.Time // the time the checkpoints are made and committed
}

func newCertifiedCluster(t *testing.T) certifiedCluster {
	t.Helper()
	c := certifiedCluster{cmds: script(t, testutil.NewFederation(t)), signers: map[string]*attestation.FileSigner{}, at: auditT0.Add(time.Hour)}
	admin := testutil.NewAdmin("alice") // script's admin, quorum of one
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		s, err := attestation.NewFileSigner(priv)
		require.NoError(t, err)
		c.signers[id] = s
		now := auditT0.Add(30 * time.Minute)
		raw := testutil.ChangeBytes(t, testutil.EndorseNodeKey(id, s.Public(), now, now.Add(24*time.Hour)), now)
		b, err := state.Encode(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)}, state.EnvelopeMeta{Time: now, Principal: "token:alice"})
		require.NoError(t, err)
		c.cmds = append(c.cmds, b)
	}
	return c
}

// note is the checkpoint text of replica f's log and state, certified by nodes.
func (c certifiedCluster) note(t *testing.T, f *auditedFSM, nodes ...string) []byte {
	t.Helper()
	r := f.fsm.Store().Read()
	commitment, err := r.Commitment()
	require.NoError(t, err)
	text := attestation.Checkpoint{Origin: "trustfed.test/audit", Size: f.log.Size(), Root: f.log.Root(),
		State: &attestation.CheckpointState{Index: r.Index(), Commitment: commitment, Time: c.at}}.Marshal()
	var lines []string
	for _, n := range nodes {
		l, err := attestation.CertifyCheckpoint(context.Background(), text, n, c.signers[n])
		require.NoError(t, err)
		lines = append(lines, l)
	}
	return attestation.AssembleNote(text, lines)
}

func (c certifiedCluster) put(t *testing.T, f *auditedFSM, index uint64, note []byte) state.Result {
	t.Helper()
	raw, err := state.Encode(&commandv1.PutCheckpoint{Note: note}, state.EnvelopeMeta{Time: c.at})
	require.NoError(t, err)
	return f.apply(index, raw)
}

// TestCertifiedCheckpointNeedsANodeQuorum: once node keys are in force,
// every replica accepts a checkpoint certified by 2 of the 3 endorsed nodes,
// and refuses one certified by a single node or signed by the registry key
// (whose seed a stolen backup of an older cluster may hold).
func TestCertifiedCheckpointNeedsANodeQuorum(t *testing.T) {
	c := newCertifiedCluster(t)
	f := newAuditedFSM(t, filepath.Join(t.TempDir(), "a.db"))
	f.fsm.OnDivergence(func(index uint64, reason string) { t.Errorf("diverged at %d: %s", index, reason) })
	for i, raw := range c.cmds {
		f.apply(uint64(i+1), raw)
	}
	require.True(t, f.fsm.Store().Read().NodeKeysInForce())
	index := uint64(len(c.cmds))

	one := c.note(t, f, "node-2")
	res := c.put(t, f, index+1, one)
	require.ErrorIs(t, res.Err, state.ErrInvalidArgument)
	require.ErrorContains(t, res.Err, "need 2 of the 3")

	registryKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)) // script's registry key
	s, _, err := attestation.NewCheckpointSigner("trustfed.test/audit", registryKey)
	require.NoError(t, err)
	legacy, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: "trustfed.test/audit", Size: f.log.Size(), Root: f.log.Root()}, s)
	require.NoError(t, err)
	require.ErrorContains(t, c.put(t, f, index+2, legacy).Err, "must be certified")
	_, ok := f.fsm.Store().Read().LatestCheckpoint()
	require.False(t, ok, "no refused checkpoint is stored")

	two := c.note(t, f, "node-1", "node-3")
	require.NoError(t, c.put(t, f, index+3, two).Err)
	cp, ok := f.fsm.Store().Read().LatestCheckpoint()
	require.True(t, ok)
	require.Equal(t, two, cp.Note)
	require.Empty(t, f.fsm.AuditFault())
}

// TestCertifiedCheckpointMarksTheDifferingReplicaDiverged: a replica whose
// state and audit log differ from the quorum's (one command of its Raft log
// was altered) applies the certified checkpoint like everyone else and
// marks itself diverged; a healthy replica does not.
func TestCertifiedCheckpointMarksTheDifferingReplicaDiverged(t *testing.T) {
	c := newCertifiedCluster(t)
	dir := t.TempDir()
	leader, healthy, forged := newAuditedFSM(t, filepath.Join(dir, "l.db")), newAuditedFSM(t, filepath.Join(dir, "h.db")), newAuditedFSM(t, filepath.Join(dir, "f.db"))
	var got []string
	forged.fsm.OnDivergence(func(_ uint64, reason string) { got = append(got, reason) })
	healthy.fsm.OnDivergence(func(index uint64, reason string) { t.Errorf("healthy replica diverged at %d: %s", index, reason) })
	for i, raw := range c.cmds {
		leader.apply(uint64(i+1), raw)
		healthy.apply(uint64(i+1), raw)
		if i == 3 {
			raw = []byte("not a command")
		}
		forged.apply(uint64(i+1), raw)
	}
	note := c.note(t, leader, "node-1", "node-2")
	index := uint64(len(c.cmds)) + 1
	require.NoError(t, c.put(t, healthy, index, note).Err)
	require.NoError(t, c.put(t, forged, index, note).Err, "the checkpoint applies on every replica")
	require.Len(t, got, 2, "its audit root and its state commitment both differ")
	require.Contains(t, got[0], "a quorum of the registry nodes certified the audit tree")
	require.Contains(t, got[1], "the checkpoint certified by a quorum of the registry nodes")
	require.NotEmpty(t, forged.fsm.AuditFault())
}
