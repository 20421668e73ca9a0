package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// auditFake is the registry's audit side for CLI tests that need a log of
// fixed content or a registry that forks its history (which a real server
// cannot be made to do): real leaves with real inclusion and consistency
// proofs, tree heads signed by its registry key as C2SP checkpoints,
// entries filtered by type, organisation and time and served pageSize at a
// time (0: as many as asked). It records cosignatures without checking
// them: the registry's check runs in TestAuditCmdAgainstRealServer.
type auditFake struct {
	trustfedv1.UnimplementedAuditServiceServer
	trustfedv1.UnimplementedRegistryServiceServer

	origin   string
	t0       time.Time // entry n is stamped t0 + n minutes
	key      ed25519.PrivateKey
	pageSize int

	mu        sync.Mutex
	entries   []*trustfedv1.AuditEntry
	leaves    [][]byte
	tree      *testonly.Tree
	cosigs    []string // cosignature lines on the current tree head
	submitted int      // AddCosignature calls
}

func newAuditFake(t *testing.T, origin string, t0 time.Time) *auditFake {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &auditFake{origin: origin, t0: t0, key: key, tree: testonly.New(rfc6962.DefaultHasher)}
}

// fork is a fake with the same key, origin and clock and an empty log: a
// registry showing another history.
func (f *auditFake) fork() *auditFake {
	return &auditFake{origin: f.origin, t0: f.t0, key: f.key, pageSize: f.pageSize, tree: testonly.New(rfc6962.DefaultHasher)}
}

// add appends entries (sequence, Raft index and time filled in; SOC2 view
// unless set), which drops the cosignatures of the previous tree head.
func (f *auditFake) add(t *testing.T, entries ...*trustfedv1.AuditEntry) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range entries {
		n := uint64(len(f.entries))
		e.Sequence, e.LogIndex, e.Time = n, n+1, timestamppb.New(f.t0.Add(time.Duration(n)*time.Minute))
		if e.Compliance == nil {
			e.Compliance = []trustfedv1.ComplianceMode{trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2}
		}
		leaf, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		require.NoError(t, err)
		f.entries, f.leaves = append(f.entries, e), append(f.leaves, leaf)
		f.tree.AppendData(leaf)
	}
	f.cosigs = nil
}

// serve replaces the whole log with entries.
func (f *auditFake) serve(t *testing.T, entries ...*trustfedv1.AuditEntry) {
	t.Helper()
	f.mu.Lock()
	f.entries, f.leaves, f.tree = nil, nil, testonly.New(rfc6962.DefaultHasher)
	f.mu.Unlock()
	f.add(t, entries...)
}

func (f *auditFake) keyID() string {
	return attestation.Fingerprint(f.key.Public().(ed25519.PublicKey))
}

func (f *auditFake) vkey(t *testing.T) string {
	t.Helper()
	vkey, err := attestation.CheckpointVerifierKey(f.origin, f.key.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	return vkey
}

// decision is a DECISION entry signed by the fake's registry key.
func (f *auditFake) decision(t *testing.T, from, to string) *trustfedv1.AuditEntry {
	t.Helper()
	statement, sig, err := attestation.SignDecision(f.key, &trustfedv1.DecisionStatement{FromOrganizationId: from, ToOrganizationId: to,
		Action: "ping", Decision: trustfedv1.Decision_DECISION_DENY, KeyId: f.keyID(), DecidedAt: timestamppb.New(f.t0),
		Reasons: []*trustfedv1.Reason{{Code: "NO_AGREEMENT", Message: "no agreement"}}})
	require.NoError(t, err)
	return &trustfedv1.AuditEntry{Type: "DECISION", OrganizationIds: []string{from, to},
		Decision: &trustfedv1.AuditDecision{Statement: statement, Signature: sig, KeyId: f.keyID(), NodeId: "n1"}}
}

// head signs the current tree head (ed25519 signatures are deterministic:
// the same tree gives the same note). Call with mu held.
func (f *auditFake) head() ([]byte, error) {
	signer, _, err := attestation.NewCheckpointSigner(f.origin, f.key)
	if err != nil {
		return nil, err
	}
	return attestation.SignCheckpoint(attestation.Checkpoint{Origin: f.origin, Size: f.tree.Size(), Root: f.tree.Hash()}, signer)
}

func (f *auditFake) GetKeys(context.Context, *trustfedv1.GetKeysRequest) (*trustfedv1.GetKeysResponse, error) {
	pub := f.key.Public().(ed25519.PublicKey)
	pemBytes, err := attestation.MarshalPublicKeyPEM(pub)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetKeysResponse{Keys: []*trustfedv1.RegistryKey{
		{KeyId: f.keyID(), PublicKey: pub, PublicKeyPem: string(pemBytes), Algorithm: "Ed25519", CreateTime: timestamppb.New(f.t0)},
	}}, nil
}

func (f *auditFake) GetSignedTreeHead(_ context.Context, req *trustfedv1.GetSignedTreeHeadRequest) (*trustfedv1.GetSignedTreeHeadResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int(req.GetMinCosignatures()) > len(f.cosigs) {
		return nil, status.Errorf(codes.NotFound, "no kept checkpoint has %d cosignatures", req.GetMinCosignatures())
	}
	note, err := f.head()
	if err != nil {
		return nil, err
	}
	var witnesses []string
	for _, line := range f.cosigs {
		note = append(note, line+"\n"...)
		witnesses = append(witnesses, strings.Fields(line)[1])
	}
	vkey, err := attestation.CheckpointVerifierKey(f.origin, f.key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetSignedTreeHeadResponse{
		Checkpoint: note, Origin: f.origin, TreeSize: f.tree.Size(), RootHash: f.tree.Hash(), Witnesses: witnesses,
		Time: timestamppb.New(f.t0), VerifierKey: vkey, LogSize: f.tree.Size(), Meta: &trustfedv1.ReadMeta{Index: 77},
	}, nil
}

func (f *auditFake) ListAuditEntries(_ context.Context, req *trustfedv1.ListAuditEntriesRequest) (*trustfedv1.ListAuditEntriesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := f.tree.Size()
	if req.TreeSize != 0 {
		size = req.TreeSize
	}
	var from uint64
	if req.PageToken != "" {
		var err error
		if from, err = strconv.ParseUint(req.PageToken, 10, 64); err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token")
		}
	}
	page := int(req.PageSize)
	if page == 0 || (f.pageSize > 0 && f.pageSize < page) {
		page = max(f.pageSize, 1)
	}
	resp := &trustfedv1.ListAuditEntriesResponse{TreeSize: size}
	for seq := from; seq < size; seq++ {
		e := f.entries[seq]
		switch {
		case req.Type != "" && e.Type != req.Type,
			req.OrganizationId != "" && !slices.Contains(e.OrganizationIds, req.OrganizationId),
			req.Since != nil && e.Time.AsTime().Before(req.Since.AsTime()),
			req.Until != nil && !e.Time.AsTime().Before(req.Until.AsTime()):
			continue
		}
		if len(resp.Records) == page {
			resp.NextPageToken = strconv.FormatUint(seq, 10)
			break
		}
		rec := &trustfedv1.AuditRecord{Sequence: seq, Leaf: f.leaves[seq], Entry: proto.CloneOf(e)}
		if req.WithProofs {
			var err error
			if rec.InclusionProof, err = f.tree.InclusionProof(seq, size); err != nil {
				return nil, err
			}
		}
		resp.Records = append(resp.Records, rec)
	}
	return resp, nil
}

func (f *auditFake) GetInclusionProof(_ context.Context, req *trustfedv1.GetInclusionProofRequest) (*trustfedv1.GetInclusionProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := req.TreeSize
	if size == 0 {
		size = f.tree.Size()
	}
	hashes, err := f.tree.InclusionProof(req.Sequence, size)
	if err != nil || req.Sequence >= size {
		return nil, status.Error(codes.InvalidArgument, "sequence")
	}
	return &trustfedv1.GetInclusionProofResponse{Sequence: req.Sequence, TreeSize: size, Hashes: hashes, Leaf: f.leaves[req.Sequence]}, nil
}

func (f *auditFake) GetConsistencyProof(_ context.Context, req *trustfedv1.GetConsistencyProofRequest) (*trustfedv1.GetConsistencyProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	hashes, err := f.tree.ConsistencyProof(req.First, req.Second)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &trustfedv1.GetConsistencyProofResponse{First: req.First, Second: req.Second, Hashes: hashes}, nil
}

func (f *auditFake) AddCosignature(_ context.Context, req *trustfedv1.AddCosignatureRequest) (*trustfedv1.AddCosignatureResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submitted++
	var line string
	for _, l := range strings.Split(string(req.Checkpoint), "\n") {
		if strings.HasPrefix(l, "— "+req.OrganizationId+" ") {
			line = l
		}
	}
	f.cosigs = append(f.cosigs, line)
	return &trustfedv1.AddCosignatureResponse{TreeSize: f.tree.Size()}, nil
}

// startAuditFake serves f over TLS; it returns the CLI's environment.
func startAuditFake(t *testing.T, f *auditFake) map[string]string {
	t.Helper()
	addr, ca := serveFake(t, func(srv *grpc.Server) {
		trustfedv1.RegisterAuditServiceServer(srv, f)
		trustfedv1.RegisterRegistryServiceServer(srv, f)
	})
	return map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": ca}
}
