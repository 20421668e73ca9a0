package state_test

import (
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

// BenchmarkApplyAuditedDecisions measures what the state machine spends to
// audit one decision (decode, build the entry, append it to the on-disk log
// without fsync, as the server runs it), at the batch sizes group commit
// produces, each batch carrying its server's batch id as followers send
// them (the state machine remembers the last one per server). The number is
// per decision.
func BenchmarkApplyAuditedDecisions(b *testing.B) {
	st, err := proto.Marshal(&trustfedv1.DecisionStatement{FromOrganizationId: "bench-a", ToOrganizationId: "bench-b", Action: "task_send",
		Decision: trustfedv1.Decision_DECISION_ALLOW, EffectiveLevel: 3, FromLevel: 4, ToLevel: 3, RequiredLevel: 2, AgreementId: "agr-0000000000000001",
		Controls: &trustfedv1.ControlProfile{}, KeyId: "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"})
	require.NoError(b, err)
	sig := make([]byte, 64)
	for _, batch := range []int{16, 64, 256} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			l, err := audit.OpenWith(filepath.Join(b.TempDir(), "audit.db"), audit.Options{NoSync: true})
			require.NoError(b, err)
			defer l.Close()
			fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
			require.NoError(b, fsm.AttachAudit(registry.AuditLog{Log: l}))
			evs := make([]*commandv1.AuditEvent, batch)
			for i := range evs {
				evs[i] = &commandv1.AuditEvent{Event: &commandv1.AuditEvent_Decision{Decision: &trustfedv1.AuditDecision{Statement: st, Signature: sig, KeyId: "k", NodeId: "dev"}}, Principal: "token:abc"}
			}
			var raws [2][]byte // two batch ids in turn: never a resend
			for i := range raws {
				raws[i], err = state.Encode(&commandv1.AppendAudit{Events: evs, NodeId: "n2", BatchId: "batch-" + strconv.Itoa(i)}, state.EnvelopeMeta{Time: time.Now()})
				require.NoError(b, err)
			}
			b.ResetTimer()
			var index uint64
			for done := 0; done < b.N; done += batch {
				index++
				if res := fsm.Apply(index, raws[index%2]).(state.Result); res.Err != nil || res.Duplicate {
					b.Fatal(res.Err, res.Duplicate)
				}
				fsm.EndBatch()
			}
		})
	}
}
