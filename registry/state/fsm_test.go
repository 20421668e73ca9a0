package state

import (
	"bytes"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type harness struct {
	t     *testing.T
	fsm   *FSM
	index uint64
	now   time.Time
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, fsm: NewFSM(NewStore(), nil), now: t0}
}

func (h *harness) apply(cmd proto.Message, requestID string) Result {
	h.t.Helper()
	b, err := Encode(cmd, EnvelopeMeta{RequestID: requestID, Time: h.now, Principal: "test"})
	require.NoError(h.t, err)
	return h.applyRaw(b)
}

func (h *harness) applyRaw(b []byte) Result {
	h.index++
	return h.fsm.Apply(h.index, b).(Result)
}

func (h *harness) snapshotBytes() []byte {
	h.t.Helper()
	snap, err := h.fsm.Snapshot()
	require.NoError(h.t, err)
	defer snap.Release()
	var buf bytes.Buffer
	require.NoError(h.t, snap.Persist(&buf))
	return buf.Bytes()
}

func org(id, name string, level uint32) *commandv1.CreateOrganization {
	return &commandv1.CreateOrganization{Organization: &trustfedv1.Organization{Id: id, Name: name, DeclaredLevel: level}}
}

func agreement(id, a, b string) *commandv1.CreateAgreement {
	return &commandv1.CreateAgreement{Agreement: &trustfedv1.Agreement{Id: id, OrganizationAId: a, OrganizationBId: b}}
}

func u32(v uint32) *uint32 { return &v }
func str(v string) *string { return &v }

func TestApplyEveryCommand(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.apply(org("acme-bank", "Acme Bank", 3), "r1").Err)
	require.NoError(t, h.apply(org("st-mary", "St Mary Hospital", 2), "").Err)
	require.NoError(t, h.apply(&commandv1.UpdateOrganization{OrganizationId: "st-mary", DeclaredLevel: u32(4), Name: str("St Mary")}, "").Err)
	require.NoError(t, h.apply(agreement("agr-0000000000000001", "acme-bank", "st-mary"), "").Err)
	sum := sha256.Sum256([]byte("secret"))
	require.NoError(t, h.apply(&commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{Id: "t1", SecretSha256: sum[:], Role: commandv1.Role_ROLE_ADMIN}}, "").Err)

	r := h.fsm.Store().Read()
	require.EqualValues(t, 5, r.Index())
	o, ok := r.Organization("st-mary")
	require.True(t, ok)
	require.EqualValues(t, 4, o.DeclaredLevel)
	require.Equal(t, "St Mary", o.Name)
	require.EqualValues(t, 2, o.CreateIndex)
	require.EqualValues(t, 3, o.ModifyIndex)
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE, o.Status)
	require.True(t, o.CreateTime.AsTime().Equal(t0))
	ag, ok := r.ActiveAgreement("st-mary", "acme-bank")
	require.True(t, ok, "agreement is found whatever the order of the pair")
	require.Equal(t, "agr-0000000000000001", ag.Id)
	tok, ok := r.TokenByHash(sum[:])
	require.True(t, ok)
	require.Equal(t, "t1", tok.Id)
	orgs, next := r.Organizations("", 1)
	require.Len(t, orgs, 1)
	require.Equal(t, "acme-bank", next)
	orgs, next = r.Organizations(next, 10)
	require.Equal(t, "st-mary", orgs[0].Id)
	require.Empty(t, next)
	ags, _ := r.Agreements("st-mary", "", 10)
	require.Len(t, ags, 1)
}

func TestBadCommandsChangeNothing(t *testing.T) {
	sum := sha256.Sum256([]byte("secret"))
	cases := []struct {
		name  string
		cmd   proto.Message
		raw   []byte
		is    error
		field string
	}{
		{name: "corrupt bytes", raw: []byte{0xff, 0xff, 0xff}, is: ErrCorruptCommand},
		{name: "unknown type", raw: mustMarshal(t, &commandv1.Envelope{Type: 999, Time: nil}), is: ErrInvalidArgument, field: "type"},
		{name: "bad id", cmd: org("Bad ID", "x", 1), is: ErrInvalidArgument, field: "organization_id"},
		{name: "level out of range", cmd: org("new-org", "New", 5), is: ErrInvalidArgument, field: "declared_level"},
		{name: "empty name", cmd: org("new-org", "", 1), is: ErrInvalidArgument, field: "name"},
		{name: "duplicate id", cmd: org("acme-bank", "Other", 1), is: ErrAlreadyExists, field: "organization_id"},
		{name: "duplicate name any case", cmd: org("other", "ACME BANK", 1), is: ErrAlreadyExists, field: "name"},
		{name: "update unknown", cmd: &commandv1.UpdateOrganization{OrganizationId: "nobody", DeclaredLevel: u32(1)}, is: ErrNotFound, field: "organization_id"},
		{name: "update nothing", cmd: &commandv1.UpdateOrganization{OrganizationId: "acme-bank"}, is: ErrInvalidArgument, field: "organization_id"},
		{name: "update bad level", cmd: &commandv1.UpdateOrganization{OrganizationId: "acme-bank", DeclaredLevel: u32(9)}, is: ErrInvalidArgument, field: "declared_level"},
		{name: "agreement with self", cmd: agreement("agr-0000000000000002", "acme-bank", "acme-bank"), is: ErrInvalidArgument, field: "organization_b_id"},
		{name: "agreement unknown party", cmd: agreement("agr-0000000000000002", "acme-bank", "ghost"), is: ErrNotFound, field: "organization_b_id"},
		{name: "second active agreement", cmd: agreement("agr-0000000000000002", "st-mary", "acme-bank"), is: ErrAlreadyExists, field: "organization_b_id"},
		{name: "second bootstrap token", cmd: &commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{Id: "t2", SecretSha256: sum[:], Role: commandv1.Role_ROLE_ADMIN}}, is: ErrFailedPrecondition, field: "token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			require.NoError(t, h.apply(org("acme-bank", "Acme Bank", 3), "").Err)
			require.NoError(t, h.apply(org("st-mary", "St Mary", 2), "").Err)
			require.NoError(t, h.apply(agreement("agr-0000000000000001", "acme-bank", "st-mary"), "").Err)
			require.NoError(t, h.apply(&commandv1.PutToken{Bootstrap: true, Token: &commandv1.Token{Id: "t1", SecretSha256: sum[:], Role: commandv1.Role_ROLE_ADMIN}}, "").Err)
			before := stripIndex(t, h.snapshotBytes())

			var res Result
			if tc.raw != nil {
				res = h.applyRaw(tc.raw)
			} else {
				res = h.apply(tc.cmd, "")
			}
			require.ErrorIs(t, res.Err, tc.is)
			if tc.field != "" {
				var e *Error
				require.ErrorAs(t, res.Err, &e)
				require.Equal(t, tc.field, e.Field)
			}
			require.Equal(t, before, stripIndex(t, h.snapshotBytes()), "a refused command must not change state")
		})
	}
}

func TestRequestIDDeduplicates(t *testing.T) {
	h := newHarness(t)
	orig := h.apply(org("acme-bank", "Acme Bank", 3), "req-1")
	require.NoError(t, orig.Err)
	again := h.apply(org("acme-bank", "Acme Bank", 3), "req-1")
	require.NoError(t, again.Err, "a retried request succeeds as the first did")
	require.True(t, again.Duplicate)
	require.Equal(t, orig.Index, again.Index)

	other := h.apply(org("other", "Other", 1), "req-1")
	require.ErrorIs(t, other.Err, ErrInvalidArgument)
	_, ok := h.fsm.Store().Read().Organization("other")
	require.False(t, ok, "a reused request id with other content is not applied")

	failed := h.apply(org("acme-bank", "Duplicate", 1), "req-2")
	require.ErrorIs(t, failed.Err, ErrAlreadyExists)
	retried := h.apply(org("acme-bank", "Duplicate", 1), "req-2")
	require.ErrorIs(t, retried.Err, ErrAlreadyExists, "a retried failure fails the same way")
	require.True(t, retried.Duplicate)

	// Request ids are forgotten after RequestTTL of command time.
	h.now = h.now.Add(RequestTTL + time.Second)
	require.NoError(t, h.apply(org("later", "Later", 1), "").Err)
	_, ok = first[*commandv1.AppliedRequest](h.fsm.Store().Read().txn, tableRequests, "id", "req-1")
	require.False(t, ok)
}

func TestSnapshotRestoreIdentical(t *testing.T) {
	h := newHarness(t)
	for i, id := range []string{"org-a", "org-b", "org-c", "org-d"} {
		require.NoError(t, h.apply(org(id, "Org "+id, uint32(i)), "req-"+id).Err)
	}
	require.NoError(t, h.apply(agreement("agr-00000000000000aa", "org-a", "org-b"), "").Err)
	require.NoError(t, h.apply(&commandv1.UpdateOrganization{OrganizationId: "org-c", Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_SUSPENDED.Enum()}, "").Err)
	snap := h.snapshotBytes()

	restored := newHarness(t)
	// Restore replaces: state that was there before is gone.
	require.NoError(t, restored.apply(org("stale", "Stale", 1), "").Err)
	require.NoError(t, restored.fsm.Restore(bytes.NewReader(snap)))
	require.Equal(t, snap, restored.snapshotBytes(), "restored state must persist to identical bytes")
	r := restored.fsm.Store().Read()
	_, ok := r.Organization("stale")
	require.False(t, ok)
	require.Equal(t, h.fsm.Store().Read().Index(), r.Index())

	// The de-duplication table survives a restore.
	restored.index = h.index
	res := restored.apply(org("org-a", "Org org-a", 0), "req-org-a")
	require.True(t, res.Duplicate)

	kept := restored.snapshotBytes()
	require.Error(t, restored.fsm.Restore(bytes.NewReader(snap[:len(snap)/2])), "a truncated snapshot is refused")
	require.Equal(t, kept, restored.snapshotBytes(), "a refused restore keeps the state")
}

func TestRevokedIsPermanent(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.apply(org("acme-bank", "Acme Bank", 3), "").Err)
	require.NoError(t, h.apply(&commandv1.UpdateOrganization{OrganizationId: "acme-bank", Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED.Enum()}, "").Err)
	res := h.apply(&commandv1.UpdateOrganization{OrganizationId: "acme-bank", Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE.Enum()}, "")
	require.ErrorIs(t, res.Err, ErrFailedPrecondition)
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

// stripIndex drops the snapshot header (which holds the applied index) so two
// snapshots can be compared by content.
func stripIndex(t *testing.T, snap []byte) []byte {
	t.Helper()
	var hdr commandv1.SnapshotHeader
	n := int(snap[0]) // header records are short: one-byte length prefix
	require.NoError(t, proto.Unmarshal(snap[1:1+n], &hdr))
	return snap[1+n:]
}
