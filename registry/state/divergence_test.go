package state_test

import (
	"bytes"
	"crypto/ed25519"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

// TestCheckpointCommitmentDivergence: a replica that applies a checkpoint
// carrying the leader's commitment at an index compares it with its own at
// that index. The same history agrees; a replica whose state differs (here
// one command never took effect) reports divergence at that index, and
// still applies the checkpoint like everyone else.
func TestCheckpointCommitmentDivergence(t *testing.T) {
	cmds := script(t, testutil.NewFederation(t))
	dir := t.TempDir()
	leader, healthy, forged := newAuditedFSM(t, filepath.Join(dir, "l.db")), newAuditedFSM(t, filepath.Join(dir, "h.db")), newAuditedFSM(t, filepath.Join(dir, "f.db"))
	type divergence struct {
		index  uint64
		reason string
	}
	var got []divergence
	forged.fsm.OnDivergence(func(index uint64, reason string) { got = append(got, divergence{index, reason}) })
	healthy.fsm.OnDivergence(func(index uint64, reason string) { t.Errorf("healthy replica diverged at %d: %s", index, reason) })
	for i, raw := range cmds {
		leader.apply(uint64(i+1), raw)
		healthy.apply(uint64(i+1), raw)
		if i == 3 {
			raw = []byte("not a command") // this replica's copy of entry 4 no longer says what was committed
		}
		forged.apply(uint64(i+1), raw)
	}
	at := uint64(len(cmds))
	commitment, err := leader.fsm.Store().Read().Commitment()
	require.NoError(t, err)

	registryKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)) // script's signing key
	signer, _, err := attestation.NewCheckpointSigner("trustfed.test/audit", registryKey)
	require.NoError(t, err)
	for _, r := range []*auditedFSM{healthy, forged} {
		note, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: "trustfed.test/audit", Size: r.log.Size(), Root: r.log.Root()}, signer)
		require.NoError(t, err)
		raw, err := state.Encode(&commandv1.PutCheckpoint{Note: note, StateCommitment: commitment, StateIndex: at}, state.EnvelopeMeta{Time: auditT0.Add(time.Hour)})
		require.NoError(t, err)
		require.NoError(t, r.apply(at+2, raw).Err, "the checkpoint applies on every replica")
	}
	require.Len(t, got, 1)
	require.Equal(t, at, got[0].index)
	require.Contains(t, got[0].reason, "the cluster's checkpoint")
}

// TestReportDivergenceIsAudited: a server's report of its own divergence
// changes no state and is audited as a command; a malformed one is refused
// naming the field.
func TestReportDivergenceIsAudited(t *testing.T) {
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "a.db"))
	apply := func(index uint64, c *commandv1.ReportDivergence) state.Result {
		raw, err := state.Encode(c, state.EnvelopeMeta{Time: auditT0, Principal: "node:n2"})
		require.NoError(t, err)
		return a.apply(index, raw)
	}
	for _, tc := range []struct {
		c     *commandv1.ReportDivergence
		field string
	}{
		{&commandv1.ReportDivergence{Index: 3, Reason: "x"}, "divergence.node_id"},
		{&commandv1.ReportDivergence{NodeId: "n2", Reason: "x"}, "divergence.index"},
		{&commandv1.ReportDivergence{NodeId: "n2", Index: 3, Reason: string(bytes.Repeat([]byte("x"), state.MaxDivergenceReason+1))}, "divergence.reason"},
	} {
		var e *state.Error
		require.ErrorAs(t, apply(1, tc.c).Err, &e)
		require.Equal(t, tc.field, e.Field)
	}
	require.NoError(t, apply(2, &commandv1.ReportDivergence{NodeId: "n2", Index: 3, Reason: "the state at index 3 commits to aa"}).Err)
	entries := a.entries()
	last := entries[len(entries)-1]
	require.Equal(t, "REPORT_DIVERGENCE", last.Type)
	require.Equal(t, "node:n2", last.Principal)
	require.Empty(t, last.Error)
}

// TestReplayedCommandsAreComparedWithTheAuditLog: a restarted replica
// re-applies Raft entries its audit log already records; each command must
// hash to what the log recorded. The same log re-applied agrees; one entry
// altered in the Raft log (still a valid command) is divergence at its index.
func TestReplayedCommandsAreComparedWithTheAuditLog(t *testing.T) {
	cmds := script(t, testutil.NewFederation(t))
	path := filepath.Join(t.TempDir(), "a.db")
	first := newAuditedFSM(t, path)
	for i, raw := range cmds {
		first.apply(uint64(i+1), raw)
	}
	require.NoError(t, first.log.Close())

	replay := func(alter int) []uint64 {
		t.Helper()
		r := newAuditedFSM(t, path)
		defer func() { require.NoError(t, r.log.Close()) }()
		var got []uint64
		r.fsm.OnDivergence(func(index uint64, _ string) { got = append(got, index) })
		for i, raw := range cmds {
			if i == alter {
				env := &commandv1.Envelope{}
				require.NoError(t, proto.Unmarshal(raw, env))
				env.Principal = "token:mallory" // parses, applies, says something else
				raw, _ = proto.MarshalOptions{Deterministic: true}.Marshal(env)
			}
			r.apply(uint64(i+1), raw)
		}
		return got
	}
	require.Empty(t, replay(-1), "the unaltered log re-applies without divergence")
	require.Equal(t, []uint64{4}, replay(3))
}
