package registry

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
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
