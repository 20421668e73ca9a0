package state_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

// BenchmarkApplyUpdateOrganization applies the write of the server's write
// benchmark (AdminService.UpdateOrganization: an organisation renamed, with
// a request id, one command per Raft batch) on 100 members, with the audit
// log off and on (on disk, without fsync, as the server writes it). Each
// command is a second after the previous one, so request ids expire and are
// cleaned up as in steady state. The commands are encoded before the timer
// starts.
func BenchmarkApplyUpdateOrganization(b *testing.B) {
	for _, audited := range []bool{false, true} {
		b.Run(fmt.Sprintf("audit=%v", audited), func(b *testing.B) {
			fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
			if audited {
				l, err := audit.OpenWith(filepath.Join(b.TempDir(), "audit.db"), audit.Options{NoSync: true})
				require.NoError(b, err)
				defer l.Close()
				require.NoError(b, fsm.AttachAudit(registry.AuditLog{Log: l}))
			}
			fed := testutil.NewFederation(b)
			now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
			var index uint64
			apply := func(cmd proto.Message, requestID string) {
				b.Helper()
				raw, err := state.Encode(cmd, state.EnvelopeMeta{RequestID: requestID, Time: now, Principal: "token:bench"})
				require.NoError(b, err)
				index++
				res := fsm.Apply(index, raw).(state.Result)
				fsm.EndBatch()
				require.NoError(b, res.Err)
			}
			alice := testutil.NewAdmin("alice")
			apply(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: alice.ID, Name: "Alice", PublicKey: alice.Public()}, ApprovalsRequired: 1}, "")
			accredit := testutil.ChangeBytes(b, testutil.Accredit(fed.Issuer()), now)
			apply(&commandv1.ProposeAdminChange{Change: accredit, Approval: alice.Approve(accredit)}, "")
			const orgs = 100
			for i := range orgs {
				org := fmt.Sprintf("org-%04d", i)
				reg, sig := fed.Registration(org, 3, 3, now)
				apply(&commandv1.RegisterOrganization{Registration: reg, Signature: sig}, "")
				apply(&commandv1.ApproveOrganization{OrganizationId: org}, "")
			}
			raws := make([][]byte, b.N)
			for i := range raws {
				now = now.Add(time.Second)
				raw, err := state.Encode(&commandv1.UpdateOrganization{OrganizationId: fmt.Sprintf("org-%04d", i%orgs), Name: fmt.Sprintf("Renamed %d", i)},
					state.EnvelopeMeta{RequestID: fmt.Sprintf("req-%d", i), Time: now, Principal: "token:bench"})
				require.NoError(b, err)
				raws[i] = raw
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				index++
				res := fsm.Apply(index, raws[i]).(state.Result)
				fsm.EndBatch()
				if res.Err != nil {
					b.Fatal(res.Err)
				}
			}
		})
	}
}
