package state

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func newNodeKey(t testing.TB) ed25519.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return pub
}

// enrolment is org's signed enrolment of node with pub, signed at h.now.
func (h *harness) enrolment(org, node string, pub []byte, mutate ...func(*trustfedv1.MemberNodeEnrolment)) *commandv1.EnrolMemberNode {
	e := &trustfedv1.MemberNodeEnrolment{OrganizationId: org, NodeId: node, PublicKey: pub, SignTime: timestamppb.New(h.now)}
	for _, m := range mutate {
		m(e)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	require.NoError(h.t, err)
	return &commandv1.EnrolMemberNode{Enrolment: b, Signature: attestation.Sign(h.fed.Key(org), attestation.PurposeMemberNode, b)}
}

func (h *harness) nonce() []byte {
	b := make([]byte, MemberNonceSize)
	_, err := rand.Read(b)
	require.NoError(h.t, err)
	return b
}

func (h *harness) issue(org, node string, nonce []byte) *commandv1.IssueMemberCertificate {
	return &commandv1.IssueMemberCertificate{
		OrganizationId: org, NodeId: node, Nonce: nonce,
		NonceExpireTime: timestamppb.New(h.now.Add(2 * time.Minute)),
		Serial:          "1f", NotAfter: timestamppb.New(h.now.Add(24 * time.Hour)),
	}
}

func requireKind(t *testing.T, err error, kind error, field string) {
	t.Helper()
	require.ErrorIs(t, err, kind)
	var se *Error
	require.ErrorAs(t, err, &se)
	require.Equal(t, field, se.Field, "%v", err)
}

func TestEnrolMemberNode(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.member("globex", 3, 3)
	pub := newNodeKey(t)

	h.must(h.enrolment("acme-bank", "gw-1", pub))
	n, ok := h.read().MemberNode("acme-bank", "gw-1")
	require.True(t, ok)
	require.Equal(t, trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE, n.Status)
	require.Equal(t, []byte(pub), n.PublicKey)
	require.Equal(t, h.now, n.EnrolTime.AsTime())
	require.Equal(t, h.index, n.EnrolIndex)
	_, ok = h.read().MemberNode("globex", "gw-1")
	require.False(t, ok, "node ids are per organisation")

	cases := []struct {
		name  string
		cmd   *commandv1.EnrolMemberNode
		kind  error
		field string
	}{
		{"already enrolled", h.enrolment("acme-bank", "gw-1", newNodeKey(t)), ErrAlreadyExists, "enrolment.node_id"},
		{"key of another node", h.enrolment("acme-bank", "gw-2", pub), ErrAlreadyExists, "enrolment.public_key"},
		{"key of another organisation's node", h.enrolment("globex", "gw-9", pub), ErrAlreadyExists, "enrolment.public_key"},
		{"unknown organisation", h.enrolment("initech", "gw-1", newNodeKey(t)), ErrNotFound, "enrolment.organization_id"},
		{"bad node id", h.enrolment("acme-bank", "GW_1", newNodeKey(t)), ErrInvalidArgument, "enrolment.node_id"},
		{"empty node id", h.enrolment("acme-bank", "", newNodeKey(t)), ErrInvalidArgument, "enrolment.node_id"},
		{"bad org id", h.enrolment("Acme", "gw-1", newNodeKey(t)), ErrInvalidArgument, "enrolment.organization_id"},
		{"short key", h.enrolment("acme-bank", "gw-3", make([]byte, 31)), ErrInvalidArgument, "enrolment.public_key"},
		{"no sign time", h.enrolment("acme-bank", "gw-3", newNodeKey(t), func(e *trustfedv1.MemberNodeEnrolment) { e.SignTime = nil }), ErrInvalidArgument, "enrolment.sign_time"},
		{"signed too early", h.enrolment("acme-bank", "gw-3", newNodeKey(t), func(e *trustfedv1.MemberNodeEnrolment) {
			e.SignTime = timestamppb.New(h.now.Add(-11 * time.Minute))
		}), ErrInvalidArgument, "enrolment.sign_time"},
		{"signed in the future", h.enrolment("acme-bank", "gw-3", newNodeKey(t), func(e *trustfedv1.MemberNodeEnrolment) {
			e.SignTime = timestamppb.New(h.now.Add(11 * time.Minute))
		}), ErrInvalidArgument, "enrolment.sign_time"},
		{"empty enrolment", &commandv1.EnrolMemberNode{Signature: []byte("x")}, ErrInvalidArgument, "enrolment"},
		{"garbage enrolment", &commandv1.EnrolMemberNode{Enrolment: []byte{0xff, 0xff}, Signature: []byte("x")}, ErrInvalidArgument, "enrolment"},
	}
	// Signed by another organisation's key: globex signs an enrolment for acme-bank.
	forged := h.enrolment("acme-bank", "gw-4", newNodeKey(t))
	forged.Signature = attestation.Sign(h.fed.Key("globex"), attestation.PurposeMemberNode, forged.Enrolment)
	cases = append(cases, struct {
		name  string
		cmd   *commandv1.EnrolMemberNode
		kind  error
		field string
	}{"signed with another organisation's key", forged, ErrInvalidArgument, "signature"})
	// Signed by the right key for another purpose.
	wrongPurpose := h.enrolment("acme-bank", "gw-4", newNodeKey(t))
	wrongPurpose.Signature = attestation.Sign(h.fed.Key("acme-bank"), attestation.PurposeRegistration, wrongPurpose.Enrolment)
	cases = append(cases, struct {
		name  string
		cmd   *commandv1.EnrolMemberNode
		kind  error
		field string
	}{"signed for another purpose", wrongPurpose, ErrInvalidArgument, "signature"})
	noSig := h.enrolment("acme-bank", "gw-4", newNodeKey(t))
	noSig.Signature = nil
	cases = append(cases, struct {
		name  string
		cmd   *commandv1.EnrolMemberNode
		kind  error
		field string
	}{"unsigned", noSig, ErrInvalidArgument, "signature"})

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := h.snapshotBytes()
			requireKind(t, h.apply(tc.cmd, "").Err, tc.kind, tc.field)
			require.Equal(t, stripIndex(t, before), stripIndex(t, h.snapshotBytes()), "a refused enrolment changes nothing")
		})
	}

	// A replica re-verifies: a signature over other bytes than those carried fails.
	tampered := h.enrolment("acme-bank", "gw-5", newNodeKey(t))
	tampered.Enrolment = append(bytes.Clone(tampered.Enrolment), 0x22, 0x00) // an extra (empty) field 4... still valid proto
	requireKind(t, h.apply(tampered, "").Err, ErrInvalidArgument, "signature")
}

func TestEnrolMemberNodeNeedsActiveOrganization(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	require.NoError(t, h.register("pending-org", 2, 2).Err)
	requireKind(t, h.apply(h.enrolment("pending-org", "gw-1", newNodeKey(t)), "").Err, ErrFailedPrecondition, "enrolment.organization_id")
	h.member("acme-bank", 3, 3)
	h.mustChange(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED))
	err := h.apply(h.enrolment("acme-bank", "gw-1", newNodeKey(t)), "").Err
	requireKind(t, err, ErrFailedPrecondition, "enrolment.organization_id")
	require.Contains(t, err.Error(), "SUSPENDED")
}

func TestRemoveAndReEnrolMemberNode(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	oldKey := newNodeKey(t)
	h.must(h.enrolment("acme-bank", "gw-1", oldKey))

	requireKind(t, h.apply(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-1"}, "").Err, ErrInvalidArgument, "reason")
	requireKind(t, h.apply(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-1", Reason: string(make([]byte, 501))}, "").Err, ErrInvalidArgument, "reason")
	requireKind(t, h.apply(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-1", Reason: "bad\x07bell"}, "").Err, ErrInvalidArgument, "reason")
	requireKind(t, h.apply(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-9", Reason: "gone"}, "").Err, ErrNotFound, "node_id")
	requireKind(t, h.apply(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "-x", Reason: "gone"}, "").Err, ErrInvalidArgument, "node_id")

	h.now = h.now.Add(time.Minute)
	h.must(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-1", Reason: "decommissioned"})
	n, _ := h.read().MemberNode("acme-bank", "gw-1")
	require.Equal(t, trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_REMOVED, n.Status)
	require.Equal(t, "decommissioned", n.RemoveReason)
	require.Equal(t, h.now, n.RemoveTime.AsTime())
	requireKind(t, h.apply(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-1", Reason: "again"}, "").Err, ErrFailedPrecondition, "node_id")

	// A removed node gets no certificate.
	requireKind(t, h.apply(h.issue("acme-bank", "gw-1", h.nonce()), "").Err, ErrFailedPrecondition, "node_id")

	// Re-enrolment needs a new key; with one it is allowed.
	requireKind(t, h.apply(h.enrolment("acme-bank", "gw-1", oldKey), "").Err, ErrAlreadyExists, "enrolment.public_key")
	newKey := newNodeKey(t)
	h.must(h.enrolment("acme-bank", "gw-1", newKey))
	n, _ = h.read().MemberNode("acme-bank", "gw-1")
	require.Equal(t, trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE, n.Status)
	require.Equal(t, []byte(newKey), n.PublicKey)
	require.Empty(t, n.RemoveReason)
	// The old key left the key index with the old row: another node may use it.
	h.must(h.enrolment("acme-bank", "gw-2", oldKey))
}

func TestIssueMemberCertificate(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.must(h.enrolment("acme-bank", "gw-1", newNodeKey(t)))

	nonce := h.nonce()
	h.must(h.issue("acme-bank", "gw-1", nonce))
	n, _ := h.read().MemberNode("acme-bank", "gw-1")
	require.Equal(t, "1f", n.LastCertificateSerial)
	require.Equal(t, h.now, n.LastCertificateTime.AsTime())
	require.True(t, h.read().NonceUsed(nonce))

	// Replay: the same challenge again, even a second later.
	h.now = h.now.Add(time.Second)
	err := h.apply(h.issue("acme-bank", "gw-1", nonce), "").Err
	requireKind(t, err, ErrFailedPrecondition, "nonce")
	require.Contains(t, err.Error(), "challenge was already used")

	expired := h.issue("acme-bank", "gw-1", h.nonce())
	expired.NonceExpireTime = timestamppb.New(h.now)
	requireKind(t, h.apply(expired, "").Err, ErrFailedPrecondition, "nonce_expire_time")
	tooLong := h.issue("acme-bank", "gw-1", h.nonce())
	tooLong.NonceExpireTime = timestamppb.New(h.now.Add(MaxMemberChallengeTTL + time.Second))
	requireKind(t, h.apply(tooLong, "").Err, ErrInvalidArgument, "nonce_expire_time")
	requireKind(t, h.apply(h.issue("acme-bank", "gw-1", make([]byte, 16)), "").Err, ErrInvalidArgument, "nonce")
	badSerial := h.issue("acme-bank", "gw-1", h.nonce())
	badSerial.Serial = "XYZ"
	requireKind(t, h.apply(badSerial, "").Err, ErrInvalidArgument, "serial")
	badNotAfter := h.issue("acme-bank", "gw-1", h.nonce())
	badNotAfter.NotAfter = timestamppb.New(h.now.Add(-time.Second))
	requireKind(t, h.apply(badNotAfter, "").Err, ErrInvalidArgument, "not_after")
	requireKind(t, h.apply(h.issue("acme-bank", "gw-9", h.nonce()), "").Err, ErrNotFound, "node_id")
	requireKind(t, h.apply(h.issue("initech", "gw-1", h.nonce()), "").Err, ErrNotFound, "organization_id")

	h.mustChange(testutil.SetStatus("acme-bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED))
	err = h.apply(h.issue("acme-bank", "gw-1", h.nonce()), "").Err
	requireKind(t, err, ErrFailedPrecondition, "organization_id")
	require.Contains(t, err.Error(), "REVOKED")
}

// Used nonces are forgotten, a bounded number per certificate, once their
// challenge has expired; never before.
func TestUsedNoncesArePruned(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.must(h.enrolment("acme-bank", "gw-1", newNodeKey(t)))
	var nonces [][]byte
	for range maxPrunePerApply + 10 {
		nonces = append(nonces, h.nonce())
		h.must(h.issue("acme-bank", "gw-1", nonces[len(nonces)-1]))
	}
	require.Equal(t, len(nonces), count(h.read().txn, tableUsedNonces))

	// One minute later none has expired (they live 2 minutes).
	h.now = h.now.Add(time.Minute)
	h.must(h.issue("acme-bank", "gw-1", h.nonce()))
	require.Equal(t, len(nonces)+1, count(h.read().txn, tableUsedNonces))

	// After they expired, each certificate forgets at most maxPrunePerApply.
	h.now = h.now.Add(2 * time.Minute)
	h.must(h.issue("acme-bank", "gw-1", h.nonce()))
	require.Equal(t, len(nonces)+2-maxPrunePerApply, count(h.read().txn, tableUsedNonces))
	h.must(h.issue("acme-bank", "gw-1", h.nonce()))
	require.Equal(t, 2, count(h.read().txn, tableUsedNonces), "only the two unexpired nonces remain")
	require.False(t, h.read().NonceUsed(nonces[0]))
}

func TestListMemberNodes(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	for _, org := range []string{"acme", "acme-bank", "globex"} {
		h.member(org, 3, 3)
		for i := range 3 {
			h.must(h.enrolment(org, fmt.Sprintf("n%d", i), newNodeKey(t)))
		}
	}
	h.must(&commandv1.RemoveMemberNode{OrganizationId: "acme", NodeId: "n1", Reason: "gone"})

	keys := func(ns []*trustfedv1.MemberNode) []string {
		var out []string
		for _, n := range ns {
			out = append(out, MemberNodeKey(n))
		}
		return out
	}
	r := h.read()
	got, next := r.ListMemberNodes("acme", false, "", 10)
	require.Equal(t, []string{"acme/n0", "acme/n2"}, keys(got), "not acme-bank's, not the removed one")
	require.Empty(t, next)
	got, _ = r.ListMemberNodes("acme", true, "", 10)
	require.Equal(t, []string{"acme/n0", "acme/n1", "acme/n2"}, keys(got))

	// Paging over one organisation, and over all.
	got, next = r.ListMemberNodes("acme-bank", false, "", 2)
	require.Equal(t, []string{"acme-bank/n0", "acme-bank/n1"}, keys(got))
	require.Equal(t, "acme-bank/n1", next)
	got, next = r.ListMemberNodes("acme-bank", false, next, 2)
	require.Equal(t, []string{"acme-bank/n2"}, keys(got))
	require.Empty(t, next)

	var all []string
	after := ""
	for {
		page, next := r.ListMemberNodes("", true, after, 4)
		all = append(all, keys(page)...)
		if next == "" {
			break
		}
		after = next
	}
	require.Equal(t, []string{"acme/n0", "acme/n1", "acme/n2", "acme-bank/n0", "acme-bank/n1", "acme-bank/n2", "globex/n0", "globex/n1", "globex/n2"}, all)
	got, _ = r.ListMemberNodes("initech", true, "", 10)
	require.Empty(t, got)
}

// Member nodes and used nonces survive a snapshot: a restored replica
// refuses a replayed challenge like the others.
func TestMembersSnapshotRestore(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("acme-bank", 3, 3)
	h.must(h.enrolment("acme-bank", "gw-1", newNodeKey(t)))
	h.must(h.enrolment("acme-bank", "gw-2", newNodeKey(t)))
	h.must(&commandv1.RemoveMemberNode{OrganizationId: "acme-bank", NodeId: "gw-2", Reason: "gone"})
	nonce := h.nonce()
	h.must(h.issue("acme-bank", "gw-1", nonce))
	snap := h.snapshotBytes()

	restored := newHarness(t)
	require.NoError(t, restored.fsm.Restore(bytes.NewReader(snap)))
	require.Equal(t, snap, restored.snapshotBytes())
	n, ok := restored.read().MemberNode("acme-bank", "gw-2")
	require.True(t, ok)
	require.Equal(t, trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_REMOVED, n.Status)
	require.True(t, restored.read().NonceUsed(nonce))
	restored.fed, restored.index, restored.now = h.fed, h.index, h.now
	requireKind(t, restored.apply(h.issue("acme-bank", "gw-1", nonce), "").Err, ErrFailedPrecondition, "nonce")
}
