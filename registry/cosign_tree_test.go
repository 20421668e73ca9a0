package registry

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/registry/state"
)

// batchTree gives the tree NewBatchTree gives, made once for a queued
// batch and its certification (the same tree, not a copy), kept with the
// batch's result, and made afresh for other statements or batches.
func TestCosignerBatchTreeIsMadeOnce(t *testing.T) {
	now := time.Now()
	c := NewCosigner("n1", "origin", nil, state.NewStore(), slog.New(slog.DiscardHandler))
	c.clock = func() time.Time { return now }
	raw := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
	want := attestation.NewBatchTree(raw)

	var nilCosigner *Cosigner
	require.Equal(t, want.Root(), nilCosigner.batchTree(7, raw).Root())

	c.Enqueue(state.DecisionBatch{Index: 7, Time: now, Raw: raw})
	got := c.batchTree(7, [][]byte{[]byte("a"), []byte("b"), []byte("c")})
	require.Equal(t, want.Root(), got.Root())
	require.Equal(t, want.Proof(1), got.Proof(1))
	require.Same(t, got, c.batchTree(7, raw), "made once")
	require.NotSame(t, got, c.batchTree(7, raw[:2]), "other statements")
	require.Equal(t, attestation.NewBatchTree(raw[:2]).Root(), c.batchTree(7, raw[:2]).Root())
	require.NotSame(t, got, c.batchTree(8, raw), "another batch")

	res := c.evaluate(t.Context(), <-c.queue) // no keys: refused, with the tree
	require.Same(t, got, res.tree)
	c.record(7, res)
	require.Empty(t, c.trees, "the result holds it now")
	require.Same(t, got, c.batchTree(7, raw))
}
