package registry

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// newVouchRig is a certifying single-node server (its cosigner is a
// quorum of one) whose members acme, globex and initech have no agreement:
// every ping between them is a DENY.
func newVouchRig(t *testing.T) *certifyRig {
	t.Helper()
	r := newCertifyRigWith(t, true)
	fed := testutil.NewFederation(t)
	r.change(t, testutil.Accredit(fed.Issuer()))
	for _, org := range []string{"acme", "globex", "initech"} {
		reg, sig := fed.Registration(org, 3, 3, r.now)
		r.must(t, &commandv1.RegisterOrganization{Registration: reg, Signature: sig})
		r.must(t, &commandv1.ApproveOrganization{OrganizationId: org})
	}
	return r
}

func (r *certifyRig) change(t *testing.T, c *trustfedv1.AdminChange) {
	t.Helper()
	raw := testutil.ChangeBytes(t, c, r.now)
	r.must(t, &commandv1.ProposeAdminChange{Change: raw, Approval: r.admin.Approve(raw)})
}

func ping(from, to string) *trustfedv1.CheckInteractionRequest {
	return &trustfedv1.CheckInteractionRequest{FromOrganizationId: from, ToOrganizationId: to, Action: "ping"}
}

// decided is the audit event CheckInteraction logs for req decided on the
// current state.
func (r *certifyRig) decided(t *testing.T, req *trustfedv1.CheckInteractionRequest) *commandv1.AuditEvent {
	t.Helper()
	ctx := context.Background()
	resp, rd, now, err := r.s.decide(ctx, req)
	require.NoError(t, err)
	require.NoError(t, r.s.signDecision(ctx, rd, req, resp, now))
	require.Equal(t, trustfedv1.Certification_CERTIFICATION_QUORUM, resp.Certification)
	return &commandv1.AuditEvent{Event: &commandv1.AuditEvent_Decision{Decision: &trustfedv1.AuditDecision{Statement: resp.Statement, NodeId: "n1"}}}
}

func (r *certifyRig) decisionKeys() attestation.DecisionKeys {
	keys := attestation.DecisionKeys{}
	for _, k := range r.fsm.Store().Read().NodeKeysForVerify() {
		keys[k.KeyId] = k
	}
	return keys
}

// A batch in which a level change overtook one decision: the signers list
// that decision refused, every other decision of the batch gets a
// certificate that verifies, and the overtaken one's caller gets
// UNAVAILABLE naming why (a certificate made for it from the batch's
// signatures does not verify).
func TestCertifyBatchCertifiesAllButTheStaleDecision(t *testing.T) {
	r := newVouchRig(t)
	ctx := context.Background()
	stale := r.decided(t, ping("acme", "globex"))
	r.change(t, testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	evs := []*commandv1.AuditEvent{r.decided(t, ping("acme", "initech")), stale, r.decided(t, ping("initech", "acme"))}
	b, err := state.Encode(&commandv1.AppendAudit{Events: evs, NodeId: "n1"}, state.EnvelopeMeta{Time: r.now, Principal: "node:n1"})
	require.NoError(t, err)
	res, err := r.raft.Apply(ctx, b)
	require.NoError(t, err)
	r.fsm.EndBatch()

	certs, err := r.s.certifyBatch(ctx, res.Index, evs)
	var refused *decisionsRefused
	require.ErrorAs(t, err, &refused)
	require.Len(t, certs, 3)
	require.Nil(t, certs[1], "the overtaken decision")
	keys := r.decisionKeys()
	for _, i := range []int{0, 2} {
		require.NotNil(t, certs[i], "decision %d", i)
		head, err := attestation.VerifyCertificate(evs[i].GetDecision().Statement, certs[i], keys, r.now, 1)
		require.NoError(t, err, "decision %d", i)
		require.Equal(t, []uint64{1}, head.Refused)
	}

	why := refused.reason(stale.GetDecision().Statement)
	require.Equal(t, codes.Unavailable, status.Code(why), "%v", why)
	require.ErrorContains(t, why, "decision 1 of the batch at index")
	require.ErrorContains(t, why, "no longer holds on the state before the batch")
	var overtaken *staleDecision
	require.ErrorAs(t, why, &overtaken, "decided again by CheckInteraction")

	tree := attestation.NewBatchTree([][]byte{evs[0].GetDecision().Statement, stale.GetDecision().Statement, evs[2].GetDecision().Statement})
	made := proto.CloneOf(certs[0])
	made.LeafIndex, made.InclusionProof = 1, tree.Proof(1)
	_, err = attestation.VerifyCertificate(stale.GetDecision().Statement, made, keys, r.now, 1)
	require.ErrorIs(t, err, attestation.ErrNotCertified)
	require.ErrorContains(t, err, "decision 1 of the batch was refused by the signers")
}

// A check whose decision a write overtakes before its audit batch commits
// is decided again, once, on the new state, and answered with a
// certificate, instead of UNAVAILABLE.
func TestCheckInteractionDecidesAnOvertakenDecisionAgain(t *testing.T) {
	r := newVouchRig(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.s.batcher.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	raw := testutil.ChangeBytes(t, testutil.SetStatus("globex", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED), r.now)
	suspend, err := state.Encode(&commandv1.ProposeAdminChange{Change: raw, Approval: r.admin.Approve(raw)}, state.EnvelopeMeta{Time: r.now, Principal: "token:test"})
	require.NoError(t, err)
	var audits atomic.Int32
	var suspendedAt atomic.Uint64
	r.raft.onApply = func(_ context.Context, cmd []byte) {
		env := &commandv1.Envelope{}
		if proto.Unmarshal(cmd, env) != nil || env.Type != commandv1.CommandType_COMMAND_TYPE_APPEND_AUDIT {
			return
		}
		if audits.Add(1) == 1 { // a write commits between the first decision's read and its batch
			r.raft.index++
			require.NoError(t, r.fsm.Apply(r.raft.index, suspend).(state.Result).Err)
			suspendedAt.Store(r.raft.index)
		}
	}

	resp, err := (&registryService{Server: r.s}).CheckInteraction(ctx, ping("acme", "globex"))
	require.NoError(t, err)
	require.Equal(t, int32(2), audits.Load(), "decided and logged twice")
	require.Equal(t, trustfedv1.Certification_CERTIFICATION_QUORUM, resp.Certification)
	st, err := attestation.VerifyDecision(resp, r.decisionKeys(), resp.DecidedAt.AsTime())
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Index, suspendedAt.Load(), "decided on the state after the write")
	require.Equal(t, trustfedv1.Decision_DECISION_DENY, st.Decision)
}

// The collector counts only signatures over the head it computed itself:
// a forging node whose head refuses nothing gets no quorum from honest
// nodes that signed a head refusing its forged decision, however many
// they are; an honest node gets one from nodes that signed its head; a
// node that could not evaluate the batch takes a head a quorum signed.
func TestQuorumCountsOnlyTheCollectorsOwnHead(t *testing.T) {
	sig := func(node string) *trustfedv1.BatchSignature { return &trustfedv1.BatchSignature{NodeId: node} }
	plain, refusing := "head refusing nothing", "head refusing leaf 1"
	votes := map[string]*headVotes{
		plain:    {nodes: []string{"n1"}, sigs: []*trustfedv1.BatchSignature{sig("n1")}},
		refusing: {refused: []uint64{1}, nodes: []string{"n2", "n3"}, sigs: []*trustfedv1.BatchSignature{sig("n2"), sig("n3")}},
	}
	require.Nil(t, quorumOver(&signatureAnswer{node: "n1", head: []byte(plain)}, votes, 2), "the forger's own head")
	require.Nil(t, quorumOver(nil, votes, 2), "before its own verdict is in")

	q := quorumOver(&signatureAnswer{node: "n2", head: []byte(refusing), refused: []uint64{1}, why: map[uint64]error{1: errNotCertified}}, votes, 2)
	require.NotNil(t, q)
	require.Equal(t, []byte(refusing), q.head)
	require.Equal(t, []uint64{1}, q.refused)
	require.Len(t, q.sigs, 2)
	require.NotNil(t, q.why, "its own reasons")

	q = quorumOver(&signatureAnswer{node: "n4"}, votes, 2)
	require.NotNil(t, q, "it could not evaluate the batch")
	require.Equal(t, []byte(refusing), q.head)
	require.Nil(t, q.why, "reasons not known here")
}

// A replica that refused a decision is outvoted (diverged) only when a
// quorum of the others signed one same head that differs from its own:
// not when they signed its head (the refusal is the cluster's: a
// decision a write overtook, or a forged one), nor when no head has a
// quorum.
func TestOutvotedOnlyByAQuorumOnAnotherHead(t *testing.T) {
	mine, theirs := "head refusing leaf 1", "head refusing nothing"
	nodes, ok := outvotedBy([]byte(mine), map[string][]string{theirs: {"n3", "n2"}}, 2)
	require.True(t, ok, "a quorum vouched for the decision this node refused")
	require.Equal(t, []string{"n2", "n3"}, nodes)
	_, ok = outvotedBy([]byte(mine), map[string][]string{mine: {"n2", "n3"}, theirs: {"n1"}}, 2)
	require.False(t, ok, "a quorum refused it too; the forger's head alone is no quorum")
	_, ok = outvotedBy([]byte(mine), map[string][]string{theirs: {"n2"}}, 2)
	require.False(t, ok, "no quorum")
	_, ok = outvotedBy([]byte(mine), map[string][]string{theirs: {"n2", "n3"}}, 0)
	require.False(t, ok, "no node holds a key")
}
