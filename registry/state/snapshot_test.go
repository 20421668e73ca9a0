package state_test

import (
	"bytes"
	"context"
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
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestSnapshotHoldsEveryTable fills every table of the schema through real
// commands, snapshots, restores into a fresh store and compares the two
// table by table. The tables are the schema's, so a new table fails here
// until the history below fills it and the snapshot carries it.
func TestSnapshotHoldsEveryTable(t *testing.T) {
	fed := testutil.NewFederation(t)
	dir := t.TempDir()
	a := newAuditedFSM(t, filepath.Join(dir, "a.db"))
	var index uint64
	apply := func(raw []byte) {
		t.Helper()
		index++
		require.NoError(t, a.apply(index, raw).Err)
	}
	for _, raw := range script(t, fed) {
		index++
		a.apply(index, raw) // one command of the script is refused on purpose
	}
	for _, raw := range moreHistory(t, fed) {
		apply(raw)
	}
	// moreHistory endorsed node-1's key: the checkpoint is certified by it
	// (a quorum of one).
	nodeSigner, err := attestation.NewFileSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	require.NoError(t, err)
	at := auditT0.Add(time.Hour + time.Minute)
	r := a.fsm.Store().Read()
	commitment, err := r.Commitment()
	require.NoError(t, err)
	text := attestation.Checkpoint{Origin: "trustfed.test/audit", Size: a.log.Size(), Root: a.log.Root(),
		State: &attestation.CheckpointState{Index: r.Index(), Commitment: commitment, Time: at}}.Marshal()
	line, err := attestation.CertifyCheckpoint(context.Background(), text, "node-1", nodeSigner)
	require.NoError(t, err)
	apply(encodeAt(t, &commandv1.PutCheckpoint{Note: attestation.AssembleNote(text, []string{line})}, at, ""))

	for _, table := range state.Tables() {
		require.NotEmptyf(t, state.TableRows(a.fsm.Store(), table), "table %q is empty: extend the history of this test so it fills the new table", table)
	}

	snap, err := a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))
	snap.Release()
	fresh := newAuditedFSM(t, filepath.Join(dir, "fresh.db"))
	require.NoError(t, fresh.fsm.Restore(&buf))

	for _, table := range state.Tables() {
		want, got := state.TableRows(a.fsm.Store(), table), state.TableRows(fresh.fsm.Store(), table)
		require.Lenf(t, got, len(want), "table %q: the restored store holds %d of %d rows: the snapshot misses it", table, len(got), len(want))
		for i := range want {
			requireSameRow(t, table, i, want[i], got[i])
		}
	}
}

func requireSameRow(t *testing.T, table string, i int, want, got any) {
	t.Helper()
	if w, ok := want.(proto.Message); ok {
		g, ok := got.(proto.Message)
		require.True(t, ok, "table %q row %d: %T restored as %T", table, i, want, got)
		require.Truef(t, proto.Equal(w, g), "table %q row %d differs after restore:\nwant %v\ngot  %v", table, i, w, g)
		return
	}
	require.Equalf(t, want, got, "table %q row %d differs after restore", table, i)
}

func encodeAt(t *testing.T, cmd proto.Message, now time.Time, requestID string) []byte {
	t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{RequestID: requestID, Time: now, Principal: "token:alice"})
	require.NoError(t, err)
	return b
}

// moreHistory goes on from script: what the script leaves out so that every
// table holds a row (tokens, request ids, revoked passports, dual
// authorisations, sessions, member nodes and their used nonces).
func moreHistory(t *testing.T, fed *testutil.Federation) [][]byte {
	admin := testutil.NewAdmin("alice")
	now := auditT0.Add(time.Hour)
	var out [][]byte
	add := func(cmd proto.Message, requestID string) {
		out = append(out, encodeAt(t, cmd, now, requestID))
		now = now.Add(time.Second)
	}
	add(&commandv1.PutToken{Token: (&tokens{t: t, now: now}).newToken(commandv1.Role_ROLE_ADMIN, "", time.Hour)}, "req-token")
	raw := testutil.ChangeBytes(t, testutil.RevokePassport("pp-lost-1", "lost"), now)
	add(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)}, "")
	nodeKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	raw = testutil.ChangeBytes(t, testutil.EndorseNodeKey("node-1", nodeKey, now, now.Add(24*time.Hour)), now)
	add(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)}, "")
	reg, sig := fed.Registration("corp", 3, 3, now)
	add(&commandv1.RegisterOrganization{Registration: reg, Signature: sig}, "")
	add(&commandv1.ApproveOrganization{OrganizationId: "corp"}, "")
	terms := termsFor(now, "agr-0000000000000002", "acme", "corp")
	add(&commandv1.ProposeAgreement{Terms: terms}, "")
	for _, org := range []string{"acme", "corp"} {
		add(&commandv1.SignAgreement{AgreementId: "agr-0000000000000002", OrganizationId: org, Signature: fed.SignTerms(org, terms)}, "")
	}
	st, err := proto.Marshal(&trustfedv1.AuthorizationStatement{AuthorizationId: "auth-0000000000000001", FromOrganizationId: "acme", ToOrganizationId: "corp",
		Action: "task_send", Value: 600_000, ExpireTime: timestamppb.New(now.Add(time.Hour))})
	require.NoError(t, err)
	add(&commandv1.CreateAuthorization{Statement: st}, "")
	add(&commandv1.OpenSession{SessionId: state.SessionID("req-session"), FromOrganizationId: "acme", ToOrganizationId: "corp", Action: "task_send", Ttl: durationpb.New(time.Hour)}, "")
	enrol, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trustfedv1.MemberNodeEnrolment{OrganizationId: "acme", NodeId: "gw-1", PublicKey: fed.PublicKey("corp"), SignTime: timestamppb.New(now)})
	require.NoError(t, err)
	add(&commandv1.EnrolMemberNode{Enrolment: enrol, Signature: attestation.Sign(fed.Key("acme"), attestation.PurposeMemberNode, enrol)}, "")
	nonce := make([]byte, state.MemberNonceSize)
	_, err = rand.Read(nonce)
	require.NoError(t, err)
	add(&commandv1.IssueMemberCertificate{OrganizationId: "acme", NodeId: "gw-1", Nonce: nonce, NonceExpireTime: timestamppb.New(now.Add(2 * time.Minute)),
		Serial: "1f", NotAfter: timestamppb.New(now.Add(24 * time.Hour))}, "")
	return out
}
