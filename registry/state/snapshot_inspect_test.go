package state_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
)

// TestInspectSnapshot counts each table's rows and recomputes the audit
// root of a real snapshot, and refuses one whose audit entries were
// altered.
func TestInspectSnapshot(t *testing.T) {
	fed := testutil.NewFederation(t)
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "a.db"))
	var index uint64
	for _, raw := range script(t, fed) {
		index++
		a.apply(index, raw)
	}
	snap, err := a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))

	sum, err := state.InspectSnapshot(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	require.Equal(t, index, sum.Index)
	for _, tc := range sum.Tables {
		require.EqualValues(t, len(state.TableRows(a.fsm.Store(), tc.Table)), tc.Rows, tc.Table)
	}
	require.NotEmpty(t, sum.Tables)
	want, err := a.fsm.Store().Read().Commitment()
	require.NoError(t, err)
	require.Equal(t, want, sum.StateCommitment, "the commitment recomputed from the snapshot's rows is the state's")
	require.True(t, sum.HasAudit)
	require.True(t, sum.RootVerified)
	require.Equal(t, a.log.Size(), sum.AuditSize)
	require.Equal(t, a.log.Root(), sum.AuditRoot)
	require.NotZero(t, sum.AuditSize)

	// Flip a byte in the middle of the last audit entry's leaf bytes.
	var last []byte
	require.NoError(t, a.log.Range(a.log.Size()-1, a.log.Size(), func(_ uint64, l audit.Leaf) error {
		last = l.Data
		return nil
	}))
	bad := bytes.Clone(buf.Bytes())
	at := bytes.LastIndex(bad, last)
	require.Positive(t, at)
	bad[at+len(last)/2] ^= 1
	_, err = state.InspectSnapshot(bytes.NewReader(bad))
	require.ErrorContains(t, err, "hash to")
}
