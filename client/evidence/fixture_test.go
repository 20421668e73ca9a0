package evidence

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const testOrigin = "registry.trustfed.test/audit"

var (
	t0    = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	hipaa = trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA
	soc2  = trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2
	gdpr  = trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR
)

// testLog is an audit log as a registry would keep it: real leaves of
// every kind, signed by a registry key, in an RFC 6962 tree.
type testLog struct {
	t       *testing.T
	fed     *testutil.Federation
	key     ed25519.PrivateKey
	keyID   string
	vkey    string
	entries []*trustfedv1.AuditEntry
	leaves  [][]byte
	tree    *testonly.Tree
	index   uint64
	now     time.Time
	// heads holds the signed tree head of each size: a witness's
	// cosignature carries the second it was made, so signing again would
	// give another checkpoint for the same tree.
	heads map[uint64]*trustfedv1.GetSignedTreeHeadResponse
}

func newTestLog(t *testing.T) *testLog {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	vkey, err := attestation.CheckpointVerifierKey(testOrigin, pub)
	require.NoError(t, err)
	return &testLog{t: t, fed: testutil.NewFederation(t), key: key, keyID: attestation.Fingerprint(pub), vkey: vkey,
		tree: testonly.New(rfc6962.DefaultHasher), now: t0, heads: map[uint64]*trustfedv1.GetSignedTreeHeadResponse{}}
}

func marshal(t *testing.T, m proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(t, err)
	return b
}

// add appends an entry (stamped with its sequence, time and views).
func (l *testLog) add(e *trustfedv1.AuditEntry, sameIndex bool) *trustfedv1.AuditEntry {
	if !sameIndex {
		l.index++
		l.now = l.now.Add(time.Minute)
	}
	e.Sequence, e.LogIndex, e.Time = uint64(len(l.entries)), l.index, timestamppb.New(l.now)
	if e.Compliance == nil {
		e.Compliance = []trustfedv1.ComplianceMode{hipaa, soc2, gdpr}
	}
	leaf := marshal(l.t, e)
	l.entries, l.leaves = append(l.entries, e), append(l.leaves, leaf)
	l.tree.AppendData(leaf)
	return e
}

// command appends the entry of a command.
func (l *testLog) command(t commandv1.CommandType, payload proto.Message, orgs []string, errText string) *trustfedv1.AuditEntry {
	env := &commandv1.Envelope{Type: t, Payload: marshal(l.t, payload), Time: timestamppb.New(l.now.Add(time.Minute)), Principal: "token:admin"}
	raw := marshal(l.t, env)
	sum := sha256.Sum256(raw)
	e := &trustfedv1.AuditEntry{Type: t.String()[len("COMMAND_TYPE_"):], OrganizationIds: orgs, Principal: "token:admin",
		Error: errText, Command: raw, CommandSha256: sum[:]}
	return l.add(e, false)
}

// decision appends a decision signed with key (the registry's if nil).
func (l *testLog) decision(st *trustfedv1.DecisionStatement, key ed25519.PrivateKey) *trustfedv1.AuditEntry {
	if key == nil {
		key = l.key
	}
	st.KeyId, st.Index = l.keyID, l.index
	st.DecidedAt = timestamppb.New(l.now)
	st.ValidUntil = timestamppb.New(l.now.Add(5 * time.Minute))
	statement, sig, err := attestation.SignDecision(key, st)
	require.NoError(l.t, err)
	return l.add(&trustfedv1.AuditEntry{Type: typeDecision, OrganizationIds: []string{st.FromOrganizationId, st.ToOrganizationId},
		Principal: "org:" + st.FromOrganizationId,
		Decision:  &trustfedv1.AuditDecision{Statement: statement, Signature: sig, KeyId: l.keyID, NodeId: "n1"}}, false)
}

// populate writes a small federation's history.
func (l *testLog) populate() {
	t, f := l.t, l.fed
	reg, sig := f.Registration("acme", 3, 3, l.now)
	l.command(commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION, &commandv1.RegisterOrganization{Registration: reg, Signature: sig}, []string{"acme"}, "")
	l.command(commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION, &commandv1.ApproveOrganization{OrganizationId: "acme"}, []string{"acme"}, "")
	l.add(&trustfedv1.AuditEntry{Type: typeLevelChange, OrganizationIds: []string{"acme"}, LevelChange: &trustfedv1.AuditLevelChange{
		OrganizationId: "acme", FromLevel: 0, ToLevel: 2, Caps: []*trustfedv1.LevelCap{
			{Source: "declared", Level: 3, Detail: "declared by the organisation"},
			{Source: "onboarding", Level: 2, Detail: "onboarding until 2026-12-23T12:00:00Z"}}}}, true)
	reg, sig = f.Registration("globex", 2, 2, l.now)
	l.command(commandv1.CommandType_COMMAND_TYPE_REGISTER_ORGANIZATION, &commandv1.RegisterOrganization{Registration: reg, Signature: sig}, []string{"globex"}, "")
	l.command(commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION, &commandv1.ApproveOrganization{OrganizationId: "globex"}, []string{"globex"}, "")
	pp := f.Passport("globex", 3, l.now, l.now.Add(365*24*time.Hour))
	l.command(commandv1.CommandType_COMMAND_TYPE_SUBMIT_PASSPORT, &commandv1.SubmitPassport{OrganizationId: "globex", Passport: pp, Signature: f.SignPassport("globex", pp)}, []string{"globex"}, "")
	terms := marshal(t, &trustfedv1.AgreementTerms{AgreementId: "agr-0000000000000001", OrganizationAId: "acme", OrganizationBId: "globex",
		Scope: &trustfedv1.AgreementScope{AllowedActions: []string{"ping", "task_send"}}, NotBefore: timestamppb.New(l.now), NotAfter: timestamppb.New(l.now.AddDate(1, 0, 0))})
	l.command(commandv1.CommandType_COMMAND_TYPE_PROPOSE_AGREEMENT, &commandv1.ProposeAgreement{Terms: terms}, []string{"acme", "globex"}, "")
	for _, org := range []string{"acme", "globex"} {
		l.command(commandv1.CommandType_COMMAND_TYPE_SIGN_AGREEMENT, &commandv1.SignAgreement{AgreementId: "agr-0000000000000001", OrganizationId: org, Signature: f.SignTerms(org, terms)}, []string{"acme", "globex"}, "")
	}
	l.decision(&trustfedv1.DecisionStatement{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "ping",
		DataTypes: []trustfedv1.PiiType{trustfedv1.PiiType_PII_TYPE_EMAIL}, Decision: trustfedv1.Decision_DECISION_ALLOW,
		EffectiveLevel: 2, FromLevel: 2, ToLevel: 2, RequiredLevel: 1, AgreementId: "agr-0000000000000001",
		Controls: &trustfedv1.ControlProfile{Logging: &trustfedv1.Logging{Detail: trustfedv1.LogDetail_LOG_DETAIL_FULL}}}, nil)
	l.decision(&trustfedv1.DecisionStatement{FromOrganizationId: "acme", ToOrganizationId: "globex", Action: "context_share",
		Decision: trustfedv1.Decision_DECISION_DENY, EffectiveLevel: 2, FromLevel: 2, ToLevel: 2, RequiredLevel: 3,
		Reasons: []*trustfedv1.Reason{{Code: "LEVEL_TOO_LOW", Message: "action \"context_share\" needs level 3 (TRUSTED); effective level is 2 (ATTESTED)"}}}, nil)
	l.add(&trustfedv1.AuditEntry{Type: typeAuthFailure, Principal: "cert:unknown", AuthFailure: &trustfedv1.AuditAuthFailure{
		Method: "/trustfed.v1.AdminService/ApproveOrganization", Code: "PermissionDenied", Reason: "members cannot approve organisations",
		Identity: "org:globex", Peer: "10.0.0.7:52100", NodeId: "n1"}}, false)
	l.command(commandv1.CommandType_COMMAND_TYPE_APPROVE_ORGANIZATION, &commandv1.ApproveOrganization{OrganizationId: "initech"}, []string{"initech"},
		`organization_id: organization "initech" does not exist`)
	term, tsig := f.Termination("globex", "agr-0000000000000001", "partnership ended")
	l.command(commandv1.CommandType_COMMAND_TYPE_TERMINATE_AGREEMENT, &commandv1.TerminateAgreement{Termination: term, Signature: tsig}, []string{"acme", "globex"}, "")
	l.add(&trustfedv1.AuditEntry{Type: typeCascade, OrganizationIds: []string{"acme", "globex"}, Principal: "token:admin", CascadeId: "evt-0000000000000001"}, true)
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(l.now.Add(d)) }
	l.command(commandv1.CommandType_COMMAND_TYPE_RECORD_DELIVERIES, &commandv1.RecordDeliveries{Updates: []*commandv1.DeliveryUpdate{
		{CascadeId: "evt-0000000000000001", Delivery: &trustfedv1.Delivery{OrganizationId: "acme", DispatchTime: at(time.Second), FirstAttemptTime: at(time.Second), LastAttemptTime: at(time.Second), Attempts: 1, Channel: trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK}},
	}}, []string{"acme"}, "")
	l.command(commandv1.CommandType_COMMAND_TYPE_RECORD_DELIVERIES, &commandv1.RecordDeliveries{Updates: []*commandv1.DeliveryUpdate{
		{CascadeId: "evt-0000000000000001", Delivery: &trustfedv1.Delivery{OrganizationId: "acme", DispatchTime: at(time.Second), FirstAttemptTime: at(time.Second), LastAttemptTime: at(2 * time.Second), Attempts: 2, AckTime: at(3 * time.Second), Channel: trustfedv1.DeliveryChannel_DELIVERY_CHANNEL_WEBHOOK}},
	}}, []string{"acme"}, "")
	l.command(commandv1.CommandType_COMMAND_TYPE_PUT_TOKEN, &commandv1.PutToken{Token: &commandv1.Token{Id: "tok-1", Role: commandv1.Role_ROLE_ADMIN}}, nil, "").Redacted = true
	l.add(&trustfedv1.AuditEntry{Type: typeCorrupt, Error: "proto: cannot parse invalid wire-format data", CommandSha256: make([]byte, 32), Compliance: []trustfedv1.ComplianceMode{soc2}}, false)
}

// treeHead signs the current tree, cosigned by the witness acme.
func (l *testLog) treeHead() *trustfedv1.GetSignedTreeHeadResponse {
	if sth, ok := l.heads[l.tree.Size()]; ok {
		return proto.CloneOf(sth)
	}
	signer, vkey, err := attestation.NewCheckpointSigner(testOrigin, l.key)
	require.NoError(l.t, err)
	cp := attestation.Checkpoint{Origin: testOrigin, Size: l.tree.Size(), Root: l.tree.Hash()}
	note, err := attestation.SignCheckpoint(cp, signer)
	require.NoError(l.t, err)
	note, _, err = attestation.Cosign(note, "acme", l.fed.Key("acme"))
	require.NoError(l.t, err)
	sth := &trustfedv1.GetSignedTreeHeadResponse{Checkpoint: note, Origin: testOrigin, TreeSize: cp.Size, RootHash: cp.Root,
		Witnesses: []string{"acme"}, Time: timestamppb.New(l.now), VerifierKey: vkey, LogSize: cp.Size}
	l.heads[cp.Size] = sth
	return proto.CloneOf(sth)
}

func (l *testLog) keys() *trustfedv1.GetKeysResponse {
	pub := l.key.Public().(ed25519.PublicKey)
	pemBytes, err := attestation.MarshalPublicKeyPEM(pub)
	require.NoError(l.t, err)
	return &trustfedv1.GetKeysResponse{Keys: []*trustfedv1.RegistryKey{{KeyId: l.keyID, PublicKey: pub, PublicKeyPem: string(pemBytes),
		Algorithm: "Ed25519", CreateTime: timestamppb.New(t0)}}}
}

// records are the records matching f with proofs in the tree of size.
func (l *testLog) records(f Filters, size uint64) []*trustfedv1.AuditRecord {
	var out []*trustfedv1.AuditRecord
	for i := uint64(0); i < size; i++ {
		if !f.matches(l.entries[i]) {
			continue
		}
		proof, err := l.tree.InclusionProof(i, size)
		require.NoError(l.t, err)
		out = append(out, &trustfedv1.AuditRecord{Sequence: i, Leaf: l.leaves[i], Entry: l.entries[i], InclusionProof: proof})
	}
	return out
}

// input is the Build input of the whole log under filters f.
func (l *testLog) input(f Filters) Input {
	sth := l.treeHead()
	return Input{TreeHead: sth, Keys: l.keys(), Filters: f, Created: t0.Add(48 * time.Hour), Next: testutil.Records(l.records(f, sth.TreeSize))}
}
