package state_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// requireStateHashFull: the commitment kept incrementally is the one a
// full recomputation of the same view gives.
func requireStateHashFull(t *testing.T, f *state.FSM, step string) {
	t.Helper()
	r := f.Store().Read()
	kept, err := r.Commitment()
	require.NoError(t, err)
	full, err := r.FullCommitment()
	require.NoError(t, err)
	require.Equalf(t, full, kept, "after %s (index %d): the incremental commitment is not the full one", step, r.Index())
	require.NoError(t, r.VerifyStateHash(), step)
}

// TestIncrementalCommitmentEqualsFullRecompute applies a history that
// fills every table, then random commands drawn from creations, updates
// (levels, statuses, agreements signed and terminated), deletions (request
// ids and nonces pruned, sessions closed), refusals, duplicates and corrupt
// entries, checking after every command that the commitment kept from the
// changes equals a full recomputation; then that a restored snapshot and a
// replica that applied the same commands commit alike.
func TestIncrementalCommitmentEqualsFullRecompute(t *testing.T) {
	fed := testutil.NewFederation(t)
	dir := t.TempDir()
	a := newAuditedFSM(t, filepath.Join(dir, "a.db"))
	b := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil) // auditing off: the other path through Apply
	var index uint64
	apply := func(raw []byte, step string) state.Result {
		t.Helper()
		index++
		res := a.apply(index, raw)
		b.Apply(index, raw)
		requireStateHashFull(t, a.fsm, step)
		return res
	}
	for i, raw := range script(t, fed) {
		apply(raw, fmt.Sprintf("script command %d", i))
	}
	for i, raw := range moreHistory(t, fed) {
		apply(raw, fmt.Sprintf("history command %d", i))
	}

	admin := testutil.NewAdmin("alice")
	now := auditT0.Add(2 * time.Hour)
	orgs := []string{"acme", "corp", "bank", "nobody"}
	rng := rand.New(rand.NewPCG(19, 2026))
	encode := func(cmd proto.Message, requestID string) []byte {
		raw, err := state.Encode(cmd, state.EnvelopeMeta{RequestID: requestID, Time: now, Principal: "token:alice"})
		require.NoError(t, err)
		return raw
	}
	change := func(c *trustfedv1.AdminChange, requestID string) []byte {
		raw := testutil.ChangeBytes(t, c, now)
		return encode(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)}, requestID)
	}
	var applied, refused int
	for i := range 300 {
		now = now.Add(time.Duration(rng.IntN(600)) * time.Second) // request ids expire after 15 minutes: pruned as time goes
		org := orgs[rng.IntN(len(orgs))]
		requestID := ""
		if rng.IntN(2) == 0 {
			requestID = fmt.Sprintf("req-%d", rng.IntN(40)) // reused ids: duplicates, and mismatches refused
		}
		var raw []byte
		k := rng.IntN(9)
		switch k {
		case 0, 1:
			raw = change(testutil.SetLevel(org, uint32(1+rng.IntN(4))), requestID)
		case 2:
			s := []trustfedv1.OrganizationStatus{trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE}[rng.IntN(2)]
			raw = change(testutil.SetStatus(org, s), requestID)
		case 3:
			id := fmt.Sprintf("agr-%016x", 100+rng.IntN(5))
			terms := termsFor(now, id, "acme", "corp")
			raw = encode(&commandv1.ProposeAgreement{Terms: terms}, requestID)
			if rng.IntN(2) == 0 {
				apply(raw, fmt.Sprintf("random command %d (proposal)", i))
				raw = encode(&commandv1.SignAgreement{AgreementId: id, OrganizationId: "acme", Signature: fed.SignTerms("acme", terms)}, "")
				apply(raw, fmt.Sprintf("random command %d (signature)", i))
				raw = encode(&commandv1.SignAgreement{AgreementId: id, OrganizationId: "corp", Signature: fed.SignTerms("corp", terms)}, "")
			}
		case 4:
			name := fmt.Sprintf("org-r%d", rng.IntN(8))
			reg, sig := fed.Registration(name, 3, 3, now)
			raw = encode(&commandv1.RegisterOrganization{Registration: reg, Signature: sig}, requestID)
			orgs = append(orgs, name)
		case 5:
			raw = encode(&commandv1.OpenSession{SessionId: state.SessionID(fmt.Sprintf("s-%d", i)), FromOrganizationId: "acme", ToOrganizationId: "corp", Action: "task_send", Ttl: durationpb.New(time.Hour)}, requestID)
		case 6:
			raw = encode(&commandv1.CloseSession{SessionId: state.SessionID(fmt.Sprintf("s-%d", rng.IntN(i+1))), OrganizationId: "acme"}, requestID)
		case 7:
			raw = []byte("not a command")
		default:
			raw = encode(&commandv1.ApproveOrganization{OrganizationId: org}, requestID)
		}
		if res := apply(raw, fmt.Sprintf("random command %d (kind %d)", i, k)); res.Err == nil {
			applied++
		} else {
			refused++
		}
	}
	require.Greater(t, applied, 50, "the random commands mostly apply")
	require.Greater(t, refused, 20, "and some are refused")

	want, err := a.fsm.Store().Read().Commitment()
	require.NoError(t, err)
	got, err := b.Store().Read().Commitment()
	require.NoError(t, err)
	require.Equal(t, want, got, "an audited and an unaudited replica of the same commands commit alike")

	snap, err := a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))
	restored := state.NewFSM(state.NewStore(), nil, nil)
	require.NoError(t, restored.Restore(&buf))
	got, err = restored.Store().Read().Commitment()
	require.NoError(t, err)
	require.Equal(t, want, got, "a restored snapshot recomputes the same commitment")
}
