package state_test

import (
	"crypto/ed25519"
	"crypto/rand"
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
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The audit entries of member node commands name the organisation (an
// enrolment's payload holds only signed bytes) and hold no secret.
func TestMemberCommandsAudited(t *testing.T) {
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	fed := testutil.NewFederation(t)
	admin := testutil.NewAdmin("alice")
	now := auditT0
	var index uint64
	apply := func(cmd proto.Message) state.Result {
		b, err := state.Encode(cmd, state.EnvelopeMeta{Time: now, Principal: "token:alice"})
		require.NoError(t, err)
		index++
		return a.apply(index, b)
	}
	must := func(cmd proto.Message) { require.NoError(t, apply(cmd).Err) }
	must(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: admin.ID, Name: "Alice", PublicKey: admin.Public()}, ApprovalsRequired: 1})
	raw := testutil.ChangeBytes(t, testutil.Accredit(fed.Issuer()), now)
	must(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)})
	reg, sig := fed.Registration("acme", 3, 3, now)
	must(&commandv1.RegisterOrganization{Registration: reg, Signature: sig})
	must(&commandv1.ApproveOrganization{OrganizationId: "acme"})

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	e, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.MemberNodeEnrolment{OrganizationId: "acme", NodeId: "gw-1", PublicKey: pub, SignTime: timestamppb.New(now)})
	require.NoError(t, err)
	must(&commandv1.EnrolMemberNode{Enrolment: e, Signature: attestation.Sign(fed.Key("acme"), attestation.PurposeMemberNode, e)})
	must(&commandv1.IssueMemberCertificate{OrganizationId: "acme", NodeId: "gw-1", Nonce: make([]byte, 32),
		NonceExpireTime: timestamppb.New(now.Add(2 * time.Minute)), Serial: "ab", NotAfter: timestamppb.New(now.Add(time.Hour))})
	must(&commandv1.RemoveMemberNode{OrganizationId: "acme", NodeId: "gw-1", Reason: "retired"})

	entries := a.entries()
	got := map[string]*trustfedv1.AuditEntry{}
	for _, e := range entries {
		got[e.Type] = e
	}
	for _, typ := range []string{"ENROL_MEMBER_NODE", "ISSUE_MEMBER_CERTIFICATE", "REMOVE_MEMBER_NODE"} {
		e, ok := got[typ]
		require.True(t, ok, typ)
		require.Equal(t, []string{"acme"}, e.OrganizationIds, typ)
		require.False(t, e.Redacted, typ)
		require.Empty(t, e.Error, typ)
	}
}
