package state_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
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
	"google.golang.org/protobuf/types/known/timestamppb"
)

var auditT0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// auditedFSM is a real FSM writing a real on-disk audit log.
type auditedFSM struct {
	t   *testing.T
	fsm *state.FSM
	log *audit.Log
}

func newAuditedFSM(t *testing.T, path string) *auditedFSM {
	t.Helper()
	l, err := audit.Open(path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	fsm := state.NewFSM(state.NewStore(), attestation.Verifier{}, nil)
	require.NoError(t, fsm.AttachAudit(registry.AuditLog{Log: l}))
	return &auditedFSM{t: t, fsm: fsm, log: l}
}

// apply applies one raw command at index as its own Raft batch.
func (a *auditedFSM) apply(index uint64, raw []byte) state.Result {
	res := a.fsm.Apply(index, raw).(state.Result)
	a.fsm.EndBatch()
	return res
}

func (a *auditedFSM) entries() []*trustfedv1.AuditEntry {
	a.t.Helper()
	var out []*trustfedv1.AuditEntry
	require.NoError(a.t, a.log.Range(0, a.log.Size(), func(seq uint64, l audit.Leaf) error {
		e := &trustfedv1.AuditEntry{}
		require.NoError(a.t, proto.Unmarshal(l.Data, e))
		require.Equal(a.t, seq, e.Sequence)
		out = append(out, e)
		return nil
	}))
	return out
}

// script is a small federation's history as raw commands: an admin, an
// accredited issuer, two members with passports, an agreement, a refused
// command and a decision.
func script(t *testing.T, fed *testutil.Federation) [][]byte {
	admin := testutil.NewAdmin("alice")
	now := auditT0
	var out [][]byte
	add := func(cmd proto.Message) {
		b, err := state.Encode(cmd, state.EnvelopeMeta{Time: now, Principal: "token:alice"})
		require.NoError(t, err)
		out = append(out, b)
		now = now.Add(time.Second)
	}
	change := func(c *trustfedv1.AdminChange) {
		raw := testutil.ChangeBytes(t, c, now)
		add(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)})
	}
	seed := bytes.Repeat([]byte{9}, ed25519.SeedSize)
	add(&commandv1.PutSigningKey{Key: &commandv1.SigningKey{KeyId: "k1", PrivateSeed: seed, CreateTime: timestamppb.New(now)}})
	add(&commandv1.BootstrapAdmin{Admin: &trustfedv1.Admin{Id: admin.ID, Name: "Alice", PublicKey: admin.Public()}, ApprovalsRequired: 1})
	change(testutil.Accredit(fed.Issuer()))
	for _, org := range []string{"acme", "bank"} {
		reg, sig := fed.Registration(org, 3, 3, now)
		add(&commandv1.RegisterOrganization{Registration: reg, Signature: sig})
		add(&commandv1.ApproveOrganization{OrganizationId: org})
		change(testutil.OverrideOnboarding(org, "pilot"))
	}
	add(&commandv1.ApproveOrganization{OrganizationId: "nobody"}) // refused
	terms := termsFor(now, "agr-0000000000000001", "acme", "bank")
	add(&commandv1.ProposeAgreement{Terms: terms})
	add(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "acme", Signature: fed.SignTerms("acme", terms)})
	add(&commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: "bank", Signature: fed.SignTerms("bank", terms)})
	st, err := proto.Marshal(&trustfedv1.DecisionStatement{FromOrganizationId: "acme", ToOrganizationId: "bank", Action: "ping",
		Decision: trustfedv1.Decision_DECISION_ALLOW, DataTypes: []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_EMAIL}})
	require.NoError(t, err)
	add(&commandv1.AppendAudit{Events: []*commandv1.AuditEvent{
		{Event: &commandv1.AuditEvent_Decision{Decision: &trustfedv1.AuditDecision{Statement: st, NodeId: "n1"}}, Principal: "token:alice"},
		{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: &trustfedv1.AuditAuthFailure{Method: "/x", Code: "Unauthenticated", Peer: "10.0.0.9:4000"}}},
	}})
	change(testutil.SetStatus("bank", trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED))
	return out
}

func termsFor(now time.Time, id, a, b string) []byte {
	terms := &trustfedv1.AgreementTerms{
		AgreementId: id, OrganizationAId: a, OrganizationBId: b,
		Scope:     &trustfedv1.AgreementScope{AllowedActions: []string{"ping", "task_send"}},
		NotBefore: timestamppb.New(now), NotAfter: timestamppb.New(now.Add(365 * 24 * time.Hour)),
		Termination: &trustfedv1.TerminationConditions{OnPartyRevokedOrSuspended: true},
	}
	out, err := proto.MarshalOptions{Deterministic: true}.Marshal(terms)
	if err != nil {
		panic(err)
	}
	return out
}

func TestE06AuditEntryForEveryCommand(t *testing.T) {
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	cmds := script(t, testutil.NewFederation(t))
	for i, raw := range cmds {
		a.apply(uint64(i+1), raw)
	}
	entries := a.entries()
	byType := map[string][]*trustfedv1.AuditEntry{}
	for _, e := range entries {
		byType[e.Type] = append(byType[e.Type], e)
	}
	// One entry per command (APPEND_AUDIT writes its events instead).
	commands := 0
	for _, e := range entries {
		if len(e.Command) > 0 {
			commands++
		}
	}
	require.Equal(t, len(cmds)-1, commands)

	reg := byType["REGISTER_ORGANIZATION"]
	require.Len(t, reg, 2)
	require.Equal(t, []string{"acme"}, reg[0].OrganizationIds, "a registration names its organisation (from the changed row: the id is inside signed bytes)")

	refused := byType["APPROVE_ORGANIZATION"][2]
	require.Contains(t, refused.Error, "nobody")

	signed := byType["SIGN_AGREEMENT"]
	require.Empty(t, signed[1].Error)
	require.Equal(t, []string{"acme", "bank"}, signed[1].OrganizationIds)

	d := byType[state.AuditDecision]
	require.Len(t, d, 1)
	require.Equal(t, []string{"acme", "bank"}, d[0].OrganizationIds)
	require.Equal(t, []trustfedv1.ComplianceMode{trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA, trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2, trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR}, d[0].Compliance,
		"a decision carrying personal data belongs to every view")
	require.Len(t, byType[state.AuditAuthFailure], 1)

	// The registry's private key never reaches the log.
	key := byType["PUT_SIGNING_KEY"][0]
	require.True(t, key.Redacted)
	require.False(t, bytes.Contains(key.Command, bytes.Repeat([]byte{9}, ed25519.SeedSize)))

	// Level changes name what capped them; the revocation starts a cascade
	// naming the revoked member and its partner.
	var acmeUp bool
	for _, e := range byType[state.AuditLevelChange] {
		if e.LevelChange.OrganizationId == "acme" && e.LevelChange.ToLevel == 3 {
			acmeUp = true
			require.NotEmpty(t, e.LevelChange.Caps)
		}
	}
	require.True(t, acmeUp, "the onboarding override lifts acme to its attested level 3: %v", byType[state.AuditLevelChange])
	c := byType[state.AuditCascade]
	require.Len(t, c, 1)
	require.Equal(t, []string{"acme", "bank"}, c[0].OrganizationIds)
	require.NotEmpty(t, c[0].CascadeId)
	ev := c[0].CascadeEvent
	require.NotNil(t, ev, "the entry says what started the cascade")
	require.Equal(t, c[0].CascadeId, ev.Id)
	require.Equal(t, trustfedv1.EventKind_EVENT_KIND_REVOCATION, ev.Kind, "%v", ev)
	require.Equal(t, "bank", ev.OrganizationId)
	require.Equal(t, trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_REVOKED, ev.Status)

	// Entry times never go back, and sequence numbers have no gaps.
	for i := 1; i < len(entries); i++ {
		require.False(t, entries[i].Time.AsTime().Before(entries[i-1].Time.AsTime()))
	}
	require.NoError(t, a.log.Verify())
}

// Every replica writes the same log; re-applying the Raft log after a
// restart appends nothing twice.
func TestR8AuditLogIsDeterministicAndReplaySafe(t *testing.T) {
	cmds := script(t, testutil.NewFederation(t))
	dir := t.TempDir()
	a := newAuditedFSM(t, filepath.Join(dir, "a.db"))
	b := newAuditedFSM(t, filepath.Join(dir, "b.db"))
	for i, raw := range cmds {
		a.apply(uint64(i+1), raw)
		b.apply(uint64(i+1), raw)
	}
	require.Equal(t, a.log.Size(), b.log.Size())
	require.Equal(t, a.log.Root(), b.log.Root())

	size, root := a.log.Size(), a.log.Root()
	require.NoError(t, a.log.Close())
	restarted := newAuditedFSM(t, filepath.Join(dir, "a.db"))
	for i, raw := range cmds { // Raft replays from the start (no snapshot)
		restarted.apply(uint64(i+1), raw)
	}
	require.Equal(t, size, restarted.log.Size())
	require.Equal(t, root, restarted.log.Root())
}

// A snapshot carries the log: a new replica gets it whole; a restarted one
// keeps its own when it matches.
func TestSnapshotStreamsTheAuditLog(t *testing.T) {
	cmds := script(t, testutil.NewFederation(t))
	dir := t.TempDir()
	a := newAuditedFSM(t, filepath.Join(dir, "a.db"))
	for i, raw := range cmds {
		a.apply(uint64(i+1), raw)
	}
	snap, err := a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))
	snap.Release()

	fresh := newAuditedFSM(t, filepath.Join(dir, "fresh.db"))
	require.NoError(t, fresh.fsm.Restore(bytes.NewReader(buf.Bytes())))
	require.Equal(t, a.log.Size(), fresh.log.Size())
	require.Equal(t, a.log.Root(), fresh.log.Root())
	require.Equal(t, a.log.LastIndex(), fresh.log.LastIndex())
	// The restored replica goes on appending exactly like the others.
	more, err := state.Encode(&commandv1.ApproveOrganization{OrganizationId: "acme"}, state.EnvelopeMeta{Time: auditT0.Add(time.Hour)})
	require.NoError(t, err)
	next := uint64(len(cmds) + 1)
	a.apply(next, more)
	fresh.apply(next, more)
	require.Equal(t, a.log.Root(), fresh.log.Root())

	// A replica whose log does not match the snapshot rebuilds it.
	other := newAuditedFSM(t, filepath.Join(dir, "other.db"))
	junk, err := state.Encode(&commandv1.ApproveOrganization{OrganizationId: "junk"}, state.EnvelopeMeta{Time: auditT0})
	require.NoError(t, err)
	for i := range 50 {
		other.apply(uint64(i+1), junk)
	}
	require.NoError(t, other.fsm.Restore(bytes.NewReader(buf.Bytes())))
	root, err := a.log.RootAt(other.log.Size())
	require.NoError(t, err)
	require.Equal(t, root, other.log.Root())
	require.NoError(t, other.log.Verify())
}

// Checkpoints are checked by every replica: signature, growth, and its own
// log's root (a replica whose log differs reports an audit fault).
func TestR8CheckpointsAndCosignatures(t *testing.T) {
	fed := testutil.NewFederation(t)
	cmds := script(t, fed)
	dir := t.TempDir()
	a := newAuditedFSM(t, filepath.Join(dir, "a.db"))
	for i, raw := range cmds {
		a.apply(uint64(i+1), raw)
	}
	index := uint64(len(cmds))
	registryKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	sign := func(key ed25519.PrivateKey, size uint64, root []byte) []byte {
		s, _, err := attestation.NewCheckpointSigner("trustfed.test/audit", key)
		require.NoError(t, err)
		note, err := attestation.SignCheckpoint(attestation.Checkpoint{Origin: "trustfed.test/audit", Size: size, Root: root}, s)
		require.NoError(t, err)
		return note
	}
	put := func(f *auditedFSM, note []byte) state.Result {
		index++
		raw, err := state.Encode(&commandv1.PutCheckpoint{Note: note}, state.EnvelopeMeta{Time: auditT0.Add(time.Hour)})
		require.NoError(t, err)
		return f.apply(index, raw)
	}
	size := a.log.Size()
	good := sign(registryKey, size, a.log.Root())

	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	require.ErrorContains(t, put(a, sign(otherKey, size, a.log.Root())).Err, "note")
	require.ErrorContains(t, put(a, sign(registryKey, size+5, a.log.Root())).Err, "the log has")
	n, err := a.fsm.CheckLatestCheckpoint()
	require.NoError(t, err)
	require.Zero(t, n, "no checkpoint yet")
	require.NoError(t, put(a, good).Err)
	require.Empty(t, a.fsm.AuditFault())
	n, err = a.fsm.CheckLatestCheckpoint()
	require.NoError(t, err, "the start-up check agrees with the newest checkpoint")
	require.Equal(t, size, n)
	require.ErrorContains(t, put(a, good).Err, "does not grow", "a checkpoint must grow the log")
	require.Equal(t, size, a.log.Size(), "checkpoints are not themselves audited")

	// A replica whose log was altered flags itself when the signed
	// checkpoint arrives, and still applies it like everyone else.
	b := newAuditedFSM(t, filepath.Join(dir, "b.db"))
	for i, raw := range cmds {
		if i == 3 { // same command, another principal: same state, another entry
			env := &commandv1.Envelope{}
			require.NoError(t, proto.Unmarshal(raw, env))
			env.Principal = "token:mallory"
			raw, _ = proto.MarshalOptions{Deterministic: true}.Marshal(env)
		}
		b.apply(uint64(i+1), raw)
	}
	index = uint64(len(cmds))
	require.NoError(t, put(b, good).Err)
	require.Contains(t, b.fsm.AuditFault(), "disagrees with the checkpoint")
	_, err = b.fsm.CheckLatestCheckpoint()
	require.ErrorContains(t, err, "the checkpoint signed at index", "the start-up check finds the altered log too")

	// Witnesses cosign a kept checkpoint with their organisation key.
	index = uint64(len(cmds)) + 10
	cosign := func(org string, key ed25519.PrivateKey) state.Result {
		_, line, err := attestation.Cosign(good, org, key)
		require.NoError(t, err)
		index++
		// Cosignatures carry the witness's clock: the leader stamps its own.
		raw, err := state.Encode(&commandv1.AddCosignature{TreeSize: size, OrganizationId: org, SignatureLine: line}, state.EnvelopeMeta{Time: time.Now()})
		require.NoError(t, err)
		return a.apply(index, raw)
	}
	require.ErrorContains(t, cosign("acme", otherKey).Err, "cosignature", "a cosignature by another key is refused")
	require.ErrorContains(t, cosign("bank", fed.Key("bank")).Err, "not active", "a revoked member no longer witnesses")
	require.NoError(t, cosign("acme", fed.Key("acme")).Err)
	require.NoError(t, cosign("acme", fed.Key("acme")).Err, "cosigning again replaces the member's cosignature")
	cp, ok := a.fsm.Store().Read().LatestCheckpoint()
	require.True(t, ok)
	require.Equal(t, size, cp.TreeSize)
	require.True(t, slices.Equal(cp.Note, good))
	require.True(t, strings.HasPrefix(string(cp.Note), "trustfed.test/audit\n"))
	require.Len(t, cp.Cosignatures, 1)
	require.Equal(t, "acme", cp.Cosignatures[0].OrganizationId)
	withCosig := append(bytes.Clone(cp.Note), cp.Cosignatures[0].SignatureLine+"\n"...)
	vkey, err := attestation.CheckpointVerifierKey("trustfed.test/audit", registryKey.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	_, names, err := attestation.OpenWitnessedCheckpoint(withCosig, "trustfed.test/audit", vkey,
		[]attestation.Witness{{Name: "acme", Key: fed.Key("acme").Public().(ed25519.PublicKey)}}, 1)
	require.NoError(t, err)
	require.Equal(t, []string{"acme"}, names)
}

// In GDPR mode the log keeps keyed pseudonyms of the people it names,
// stable across entries, never the names.
func TestGDPRModePseudonymises(t *testing.T) {
	fed := testutil.NewFederation(t)
	cmds := script(t, fed)
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	for i, raw := range cmds[:3] { // signing key, admin, accreditation
		a.apply(uint64(i+1), raw)
	}
	admin := testutil.NewAdmin("alice")
	now := auditT0.Add(time.Hour)
	raw := testutil.ChangeBytes(t, testutil.Policy(&trustfedv1.FederationPolicyChange{
		ComplianceModes: &trustfedv1.ComplianceModes{Modes: []trustfedv1.ComplianceMode{trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR}},
	}), now)
	b, err := state.Encode(&commandv1.ProposeAdminChange{Change: raw, Approval: admin.Approve(raw)}, state.EnvelopeMeta{Time: now, Principal: "token:alice"})
	require.NoError(t, err)
	require.NoError(t, a.apply(4, b).Err)
	require.Equal(t, []trustfedv1.ComplianceMode{trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR}, a.fsm.Store().Read().FederationPolicy().ComplianceModes)
	for i, p := range []string{"token:alice", "token:alice"} {
		b, err := state.Encode(&commandv1.AppendAudit{Events: []*commandv1.AuditEvent{
			{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: &trustfedv1.AuditAuthFailure{Method: "/x", Identity: "mallory@example.org", Peer: "203.0.113.7:5000"}}, Principal: p},
		}}, state.EnvelopeMeta{Time: now, Principal: p})
		require.NoError(t, err)
		require.NoError(t, a.apply(uint64(5+i), b).Err)
	}
	entries := a.entries()
	last, prev := entries[len(entries)-1], entries[len(entries)-2]
	require.True(t, strings.HasPrefix(last.Principal, "pseudonym:"), last.Principal)
	require.Equal(t, last.Principal, prev.Principal, "one person, one pseudonym")
	require.True(t, strings.HasPrefix(last.AuthFailure.Identity, "pseudonym:"))
	require.True(t, strings.HasPrefix(last.AuthFailure.Peer, "pseudonym:"))
	for _, e := range entries[len(entries)-2:] {
		leaf, err := proto.Marshal(e)
		require.NoError(t, err)
		for _, name := range []string{"alice", "mallory", "203.0.113.7"} {
			require.NotContains(t, string(leaf), name)
		}
	}
	bad := testutil.ChangeBytes(t, testutil.Policy(&trustfedv1.FederationPolicyChange{
		ComplianceModes: &trustfedv1.ComplianceModes{Modes: []trustfedv1.ComplianceMode{7}},
	}), now)
	b, err = state.Encode(&commandv1.ProposeAdminChange{Change: bad, Approval: admin.Approve(bad)}, state.EnvelopeMeta{Time: now})
	require.NoError(t, err)
	require.ErrorContains(t, a.apply(7, b).Err, "compliance_modes.modes[0]")
}

// A refused call is filed under the well-formed organisation ids it names,
// once each; what else a caller put in its request never becomes a label.
func TestAuthFailureFiledUnderItsOrganisations(t *testing.T) {
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	raw, err := state.Encode(&commandv1.AppendAudit{Events: []*commandv1.AuditEvent{{
		Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: &trustfedv1.AuditAuthFailure{
			Method: "/trustfed.v1.RegistryService/CheckInteraction", Code: "PermissionDenied", Identity: "member:acme/gw-1",
			OrganizationIds: []string{"globex", "acme", "Not Valid!", "acme", strings.Repeat("x", 300)},
		}},
		Principal: "member:acme/gw-1",
	}}}, state.EnvelopeMeta{Time: auditT0})
	require.NoError(t, err)
	require.NoError(t, a.apply(1, raw).Err)
	entries := a.entries()
	require.Len(t, entries, 1)
	require.Equal(t, []string{"acme", "globex"}, entries[0].OrganizationIds)
	require.Equal(t, []string{"acme", "globex"}, entries[0].AuthFailure.OrganizationIds)
	lf, err := a.log.Leaf(0)
	require.NoError(t, err)
	require.Contains(t, lf.Labels, state.LabelOrg+"globex")
	require.NotContains(t, strings.Join(lf.Labels, ","), "Not Valid!")
}

// A server sends a batch again, under the same batch id, when its call to
// the leader was abandoned; if the first attempt was committed after all,
// the second appends nothing (Duplicate) — on every replica alike, and
// after a snapshot too. Its next batch, and another server's batch with
// the same id, are appended.
func TestAuditBatchSentAgainIsAppendedOnce(t *testing.T) {
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	batch := func(node, id string, at time.Time) []byte {
		raw, err := state.Encode(&commandv1.AppendAudit{NodeId: node, BatchId: id, Events: []*commandv1.AuditEvent{{
			Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: &trustfedv1.AuditAuthFailure{Method: "/x", Code: "Unauthenticated"}},
		}}}, state.EnvelopeMeta{Time: at, Principal: "node:" + node})
		require.NoError(t, err)
		return raw
	}
	first := a.apply(1, batch("n2", "b1", auditT0))
	require.NoError(t, first.Err)
	require.False(t, first.Duplicate)
	again := a.apply(2, batch("n2", "b1", auditT0.Add(time.Second)))
	require.NoError(t, again.Err)
	require.True(t, again.Duplicate, "the same batch from the same server is appended once")
	require.Len(t, a.entries(), 1)

	require.False(t, a.apply(3, batch("n3", "b1", auditT0)).Duplicate, "another server's batch")
	require.False(t, a.apply(4, batch("n2", "b2", auditT0)).Duplicate, "the server's next batch")
	require.Len(t, a.entries(), 3)

	// A replica restored from a snapshot refuses the resent batch too.
	snap, err := a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))
	b := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	require.NoError(t, b.fsm.Restore(&buf))
	require.True(t, b.fsm.Apply(5, batch("n2", "b2", auditT0.Add(time.Second))).(state.Result).Duplicate)
}

// A leader merges followers' batches (their first attempts) into its own
// entry as parts: every event is appended once, in order, and each part
// is remembered as its server's last batch, so the follower sending it
// again (its answer was lost) finds it appended. A malformed part list is
// refused whole.
func TestAuditMergedPartsAreRememberedAsTheirServersBatches(t *testing.T) {
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db"))
	ev := func(method string) *commandv1.AuditEvent {
		return &commandv1.AuditEvent{Event: &commandv1.AuditEvent_AuthFailure{AuthFailure: &trustfedv1.AuditAuthFailure{Method: method, Code: "Unauthenticated"}}}
	}
	encode := func(c *commandv1.AppendAudit, principal string) []byte {
		raw, err := state.Encode(c, state.EnvelopeMeta{Time: auditT0, Principal: principal})
		require.NoError(t, err)
		return raw
	}
	merged := &commandv1.AppendAudit{NodeId: "n1", BatchId: "own-1",
		Events: []*commandv1.AuditEvent{ev("/own"), ev("/n2/a"), ev("/n2/b"), ev("/n3/a")},
		Parts:  []*commandv1.AuditPart{{NodeId: "n2", BatchId: "p2", Events: 2}, {NodeId: "n3", BatchId: "p3", Events: 1}}}
	res := a.apply(1, encode(merged, "node:n1"))
	require.NoError(t, res.Err)
	require.False(t, res.Duplicate)
	entries := a.entries()
	require.Len(t, entries, 4)
	for i, m := range []string{"/own", "/n2/a", "/n2/b", "/n3/a"} {
		require.Equal(t, m, entries[i].AuthFailure.Method, "event %d in order", i)
	}

	alone := func(node, id string) *commandv1.AppendAudit {
		return &commandv1.AppendAudit{NodeId: node, BatchId: id, Events: []*commandv1.AuditEvent{ev("/again")}}
	}
	require.True(t, a.apply(2, encode(alone("n2", "p2"), "node:n2")).Duplicate, "n2 sends its merged batch again")
	require.True(t, a.apply(3, encode(alone("n3", "p3"), "node:n3")).Duplicate, "n3 sends its merged batch again")
	require.True(t, a.apply(4, encode(alone("n1", "own-1"), "node:n1")).Duplicate, "the leader's own events again")
	require.Len(t, a.entries(), 4)

	index := uint64(4)
	for name, parts := range map[string][]*commandv1.AuditPart{
		"more merged events than the entry has": {{NodeId: "n2", BatchId: "q", Events: 5}},
		"a part without a batch id":             {{NodeId: "n2", Events: 1}},
		"an empty part":                         {{NodeId: "n2", BatchId: "q"}},
		"a part appended already":               {{NodeId: "n3", BatchId: "p3", Events: 1}},
	} {
		index++
		bad := &commandv1.AppendAudit{NodeId: "n1", BatchId: "own-" + name, Events: []*commandv1.AuditEvent{ev("/x"), ev("/y")}, Parts: parts}
		res := a.apply(index, encode(bad, "node:n1"))
		require.Error(t, res.Err, name)
		for _, e := range a.entries() {
			require.NotEqual(t, "/x", e.GetAuthFailure().GetMethod(), "%s: none of its events appended", name)
		}
	}
}
