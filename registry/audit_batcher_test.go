package registry

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A decision read as leader of a term without a read-index round is
// answered only if its audit entry was committed by this node in that term;
// entries that asked for no term are answered whatever term committed them.
func TestAuditBatcherTermPinnedDecisions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		commitTerm uint64 // 0: committed through the leader from a follower
		itemTerm   uint64
		wantErr    bool
	}{
		{"read and committed in term 7", 7, 7, false},
		{"read in term 7, committed in term 9", 9, 7, true},
		{"read as leader, committed through another leader", 0, 7, true},
		{"ordinary read, committed through another leader", 0, 0, false},
		{"ordinary read, committed here", 9, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newAuditBatcher(func(_ context.Context, evs []*commandv1.AuditEvent) (auditCommit, error) {
				return auditCommit{first: 40, index: 7, term: tc.commitTerm}, nil
			}, slog.New(slog.DiscardHandler))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan struct{})
			runCtx, stop := context.WithCancel(ctx)
			go func() { b.Run(runCtx); close(done) }()
			defer func() { stop(); <-done }()

			res, err := b.Append(ctx, tc.itemTerm, &commandv1.AuditEvent{Principal: "member:acme/n1"})
			if tc.wantErr {
				require.Error(t, err)
				require.Equal(t, codes.Unavailable, status.Code(err), "the caller may retry: %v", err)
				require.ErrorContains(t, err, "leadership changed")
				return
			}
			require.NoError(t, err)
			require.Equal(t, uint64(40), res.seq)
		})
	}
}

// Followers' batches queued on the leader (AppendPart) go into one entry
// with the leader's own events, after them: each part learns where its
// events start in the audit log and where its decisions start among the
// entry's leaves. When the merged entry is not committed, the parts are
// sent back (UNAVAILABLE: their servers send them again) and the leader's
// own events are still answered.
func TestAuditBatcherMergesFollowerBatches(t *testing.T) {
	decisionEv := func(stmt string) *commandv1.AuditEvent {
		return &commandv1.AuditEvent{Event: &commandv1.AuditEvent_Decision{Decision: &trustfedv1.AuditDecision{Statement: []byte(stmt), Signature: []byte("s")}}}
	}
	failureEv := &commandv1.AuditEvent{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: &trustfedv1.AuditAuthFailure{Method: "/x"}}}
	for _, fail := range []bool{false, true} {
		t.Run(map[bool]string{false: "committed", true: "merge failed"}[fail], func(t *testing.T) {
			gate, entered := make(chan struct{}), make(chan struct{}, 1)
			var gotOwn []*commandv1.AuditEvent
			var gotParts []*commandv1.AppendAudit
			b := newAuditBatcher(func(_ context.Context, evs []*commandv1.AuditEvent) (auditCommit, error) {
				entered <- struct{}{}
				<-gate // holds the first batch until everything else is queued
				return auditCommit{first: 10, index: 5, term: 3}, nil
			}, slog.New(slog.DiscardHandler))
			b.commitMerged = func(_ context.Context, evs []*commandv1.AuditEvent, parts []*commandv1.AppendAudit) (auditCommit, error) {
				gotOwn, gotParts = evs, parts
				if fail {
					return auditCommit{first: 20, index: 6, term: 3, partsErr: errMergeFailed}, nil
				}
				return auditCommit{first: 20, index: 6, term: 3}, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			done := make(chan struct{})
			runCtx, stop := context.WithCancel(ctx)
			go func() { b.Run(runCtx); close(done) }()
			defer func() { stop(); <-done }()

			// The first batch is committing (held at the gate): the leader's
			// next event waits as the first of the next batch, and the
			// followers' parts queue behind it.
			first := make(chan auditResult, 1)
			b.queue <- auditItem{ev: decisionEv("first"), done: first}
			<-entered
			ownDone, p2Done, p3Done := make(chan auditResult, 1), make(chan auditResult, 1), make(chan auditResult, 1)
			b.queue <- auditItem{ev: decisionEv("own"), done: ownDone}
			require.Eventually(t, func() bool { return len(b.queue) == 0 }, 5*time.Second, time.Millisecond, "the next batch has begun")
			b.queue <- auditItem{part: &commandv1.AppendAudit{NodeId: "n2", BatchId: "b2", Events: []*commandv1.AuditEvent{decisionEv("a"), failureEv, decisionEv("b")}}, done: p2Done}
			b.queue <- auditItem{part: &commandv1.AppendAudit{NodeId: "n3", BatchId: "b3", Events: []*commandv1.AuditEvent{decisionEv("c")}}, done: p3Done}
			close(gate)
			require.NoError(t, (<-first).err)
			type answer struct {
				r   auditResult
				err error
			}
			own, p2, p3 := make(chan answer, 1), make(chan answer, 1), make(chan answer, 1)
			for in, out := range map[chan auditResult]chan answer{ownDone: own, p2Done: p2, p3Done: p3} {
				r := <-in
				out <- answer{r, r.err}
			}

			o := <-own
			require.NoError(t, o.err)
			require.Equal(t, uint64(20), o.r.seq, "the leader's own events come first")
			require.Len(t, gotOwn, 1)
			require.Len(t, gotParts, 2)
			a2, a3 := <-p2, <-p3
			if fail {
				require.Equal(t, codes.Unavailable, status.Code(a2.err), "%v", a2.err)
				require.Equal(t, codes.Unavailable, status.Code(a3.err), "%v", a3.err)
				return
			}
			require.NoError(t, a2.err)
			require.NoError(t, a3.err)
			require.Equal(t, auditResult{seq: 21, index: 6, leafOffset: 1}, a2.r, "after the leader's one event and one decision")
			require.Equal(t, auditResult{seq: 24, index: 6, leafOffset: 3}, a3.r, "after n2's three events, two of them decisions")
		})
	}
}

// A cosigner remembers the statements its node decided (Decided) and
// tells them apart in a batch once: the next batch holding the same bytes
// (never an honest case) is evaluated in full.
func TestCosignerKnowsItsOwnStatementsOnce(t *testing.T) {
	c := NewCosigner("n1", "origin", nil, state.NewStore(), slog.New(slog.DiscardHandler))
	mine, theirs := &trustfedv1.DecisionStatement{Index: 1}, &trustfedv1.DecisionStatement{Index: 2}
	c.Decided([]byte("mine"))
	b := state.DecisionBatch{Raw: [][]byte{[]byte("theirs"), []byte("mine")}, Statements: []*trustfedv1.DecisionStatement{theirs, mine}}
	require.Equal(t, map[*trustfedv1.DecisionStatement]bool{mine: true}, c.ownStatements(b))
	require.Empty(t, c.ownStatements(b), "forgotten once seen")
	for i := range cosignOwnKeep + 1 {
		c.Decided([]byte(fmt.Sprint(i)))
	}
	require.Len(t, c.own, cosignOwnKeep, "bounded")
}
