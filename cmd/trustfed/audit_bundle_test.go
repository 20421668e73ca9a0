package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

const bundleOrigin = "registry.trustfed.test/audit"

var bundleT0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// bundleFake serves a growing audit log of real leaves, proofs and
// signatures, a few entries a page.
type bundleFake struct {
	trustfedv1.UnimplementedAuditServiceServer
	trustfedv1.UnimplementedRegistryServiceServer

	key ed25519.PrivateKey
	mu  sync.Mutex
	log []*trustfedv1.AuditEntry
	raw [][]byte
	tr  *testonly.Tree
}

func newBundleFake(t *testing.T) *bundleFake {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return &bundleFake{key: key, tr: testonly.New(rfc6962.DefaultHasher)}
}

func (f *bundleFake) keyID() string {
	return attestation.Fingerprint(f.key.Public().(ed25519.PublicKey))
}

func (f *bundleFake) vkey(t *testing.T) string {
	vkey, err := attestation.CheckpointVerifierKey(bundleOrigin, f.key.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	return vkey
}

// add appends entries, a minute apart.
func (f *bundleFake) add(t *testing.T, entries ...*trustfedv1.AuditEntry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range entries {
		n := uint64(len(f.log))
		e.Sequence, e.LogIndex, e.Time = n, n+1, timestamppb.New(bundleT0.Add(time.Duration(n)*time.Minute))
		e.Compliance = []trustfedv1.ComplianceMode{trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2}
		leaf, err := proto.MarshalOptions{Deterministic: true}.Marshal(e)
		require.NoError(t, err)
		f.log, f.raw = append(f.log, e), append(f.raw, leaf)
		f.tr.AppendData(leaf)
	}
}

// decision is a DECISION entry signed by the fake's registry key.
func (f *bundleFake) decision(t *testing.T, from, to string) *trustfedv1.AuditEntry {
	statement, sig, err := attestation.SignDecision(f.key, &trustfedv1.DecisionStatement{FromOrganizationId: from, ToOrganizationId: to,
		Action: "ping", Decision: trustfedv1.Decision_DECISION_DENY, KeyId: f.keyID(), DecidedAt: timestamppb.New(bundleT0),
		Reasons: []*trustfedv1.Reason{{Code: "NO_AGREEMENT", Message: "no agreement"}}})
	require.NoError(t, err)
	return &trustfedv1.AuditEntry{Type: "DECISION", OrganizationIds: []string{from, to},
		Decision: &trustfedv1.AuditDecision{Statement: statement, Signature: sig, KeyId: f.keyID(), NodeId: "n1"}}
}

func authFailure() *trustfedv1.AuditEntry {
	return &trustfedv1.AuditEntry{Type: "AUTH_FAILURE", AuthFailure: &trustfedv1.AuditAuthFailure{
		Method: "/trustfed.v1.AdminService/ApproveOrganization", Code: "Unauthenticated", Reason: "no token"}}
}

func (f *bundleFake) GetKeys(context.Context, *trustfedv1.GetKeysRequest) (*trustfedv1.GetKeysResponse, error) {
	pub := f.key.Public().(ed25519.PublicKey)
	pemBytes, err := attestation.MarshalPublicKeyPEM(pub)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetKeysResponse{Keys: []*trustfedv1.RegistryKey{{KeyId: f.keyID(), PublicKey: pub, PublicKeyPem: string(pemBytes), Algorithm: "Ed25519"}}}, nil
}

func (f *bundleFake) GetSignedTreeHead(context.Context, *trustfedv1.GetSignedTreeHeadRequest) (*trustfedv1.GetSignedTreeHeadResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	signer, vkey, err := attestation.NewCheckpointSigner(bundleOrigin, f.key)
	if err != nil {
		return nil, err
	}
	cp := attestation.Checkpoint{Origin: bundleOrigin, Size: f.tr.Size(), Root: f.tr.Hash()}
	note, err := attestation.SignCheckpoint(cp, signer)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetSignedTreeHeadResponse{Checkpoint: note, Origin: bundleOrigin, TreeSize: cp.Size, RootHash: cp.Root,
		VerifierKey: vkey, LogSize: cp.Size, Time: timestamppb.New(bundleT0)}, nil
}

func (f *bundleFake) ListAuditEntries(_ context.Context, req *trustfedv1.ListAuditEntriesRequest) (*trustfedv1.ListAuditEntriesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	size := req.TreeSize
	if size == 0 {
		size = f.tr.Size()
	}
	from, _ := strconv.ParseUint(req.PageToken, 10, 64)
	resp := &trustfedv1.ListAuditEntriesResponse{TreeSize: size}
	for seq := from; seq < size; seq++ {
		if len(resp.Records) == 2 {
			resp.NextPageToken = strconv.FormatUint(seq, 10)
			break
		}
		e := f.log[seq]
		if (req.Since != nil && e.Time.AsTime().Before(req.Since.AsTime())) || (req.Until != nil && !e.Time.AsTime().Before(req.Until.AsTime())) {
			continue
		}
		rec := &trustfedv1.AuditRecord{Sequence: seq, Leaf: f.raw[seq], Entry: e}
		if req.WithProofs {
			var err error
			if rec.InclusionProof, err = f.tr.InclusionProof(seq, size); err != nil {
				return nil, err
			}
		}
		resp.Records = append(resp.Records, rec)
	}
	return resp, nil
}

func (f *bundleFake) GetConsistencyProof(_ context.Context, req *trustfedv1.GetConsistencyProofRequest) (*trustfedv1.GetConsistencyProofResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	hashes, err := f.tr.ConsistencyProof(req.First, req.Second)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetConsistencyProofResponse{First: req.First, Second: req.Second, Hashes: hashes}, nil
}

func startBundleFake(t *testing.T, f *bundleFake) map[string]string {
	t.Helper()
	addr, ca := serveFake(t, func(srv *grpc.Server) {
		trustfedv1.RegisterAuditServiceServer(srv, f)
		trustfedv1.RegisterRegistryServiceServer(srv, f)
	})
	return map[string]string{"TRUSTFED_ADDR": addr, "TRUSTFED_CACERT": ca}
}

func TestAuditBundleUsageErrors(t *testing.T) {
	period := []string{"--since", "2026-03-01T00:00:00Z", "--until", "2026-04-01T00:00:00Z"}
	for _, args := range [][]string{
		append([]string{"audit", "export"}, period...),
		append([]string{"audit", "export", "--compliance", "pci"}, period...),
		{"audit", "export", "--compliance", "hipaa", "--since", "March", "--until", "2026-04-01T00:00:00Z"},
		{"audit", "export", "--compliance", "hipaa", "--since", "2026-04-01T00:00:00Z", "--until", "2026-03-01T00:00:00Z"},
		append([]string{"audit", "export", "--compliance", "hipaa", "--org", "Not An Org"}, period...),
		append([]string{"audit", "export", "--compliance", "hipaa", "--registry-key", "nonsense"}, period...),
		{"audit", "verify"},
		{"audit", "verify", "a.tar.gz", "--sth", "old.json"},
		{"audit", "verify", "a.tar.gz", "b.tar.gz"},
		{"audit", "replay", "extra"},
	} {
		code, _, stderr := runCLI(nil, args...)
		require.Equal(t, exitUsage, code, "%v: %s", args, stderr)
	}
}

func TestAuditExportAndVerify(t *testing.T) {
	f := newBundleFake(t)
	f.add(t, authFailure(), f.decision(t, "acme", "globex"), authFailure(), f.decision(t, "globex", "acme"), authFailure())
	env := startBundleFake(t, f)
	dir := t.TempDir()
	file := filepath.Join(dir, "evidence.tar.gz")
	export := []string{"audit", "export", "--compliance", "soc2", "--since", "2026-03-02T09:01:00Z", "--until", "2026-03-02T09:04:00Z", "-f", file}

	code, stdout, stderr := runCLI(env, append(export, "--registry-key", f.vkey(t))...)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stderr, "log entries scanned")
	require.Contains(t, stdout, "Bundle:")
	require.Contains(t, stdout, "(pinned)")
	require.Regexp(t, `Entries:\s+3 \(sequences 1\.\.3\), 2 signed decisions`, stdout)

	code, _, stderr = runCLI(env, export...)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "exists")

	code, stdout, stderr = runCLI(nil, "audit", "verify", file, "--registry-key", f.vkey(t))
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "(pinned)")
	require.Contains(t, stdout, "compliance SOC2")
	require.Contains(t, stdout, "E07-refused-attempts.json")

	code, stdout, _ = runCLI(nil, "audit", "verify", file)
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "TAKEN FROM THE BUNDLE")

	code, stdout, _ = runCLI(nil, "-o", "json", "audit", "verify", file)
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, `"entries": 3`)
	require.Contains(t, stdout, `"compliance": "SOC2"`)

	other := newBundleFake(t)
	code, _, stderr = runCLI(nil, "audit", "verify", file, "--registry-key", other.vkey(t))
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "does not verify")

	data, err := os.ReadFile(file)
	require.NoError(t, err)
	data[len(data)/2] ^= 0x40
	bad := filepath.Join(dir, "bad.tar.gz")
	require.NoError(t, os.WriteFile(bad, data, 0o644))
	code, _, stderr = runCLI(nil, "audit", "verify", bad)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "evidence bundle does not verify")

	// A registry whose published key is not the one pinned: the bundle is
	// not kept.
	file2 := filepath.Join(dir, "other.tar.gz")
	code, _, stderr = runCLI(env, append(export[:len(export)-1], file2, "--registry-key", other.vkey(t))...)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "not kept")
	_, err = os.Stat(file2)
	require.ErrorIs(t, err, os.ErrNotExist)
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, left, 2, "no temporary file is left behind")
}

func TestAuditVerifySTH(t *testing.T) {
	f := newBundleFake(t)
	f.add(t, authFailure(), authFailure(), authFailure())
	env := startBundleFake(t, f)
	old, err := f.GetSignedTreeHead(context.Background(), nil)
	require.NoError(t, err)
	data, err := protojson.Marshal(old)
	require.NoError(t, err)
	oldFile := filepath.Join(t.TempDir(), "sth.json")
	require.NoError(t, os.WriteFile(oldFile, data, 0o644))
	f.add(t, authFailure(), f.decision(t, "acme", "globex"))

	code, stdout, stderr := runCLI(env, "audit", "verify", "--sth", oldFile)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "only appended to")
	require.Contains(t, stdout, "saved in")
	code, stdout, stderr = runCLI(env, "audit", "verify", "--sth", oldFile, "--registry-key", f.vkey(t))
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "(pinned)")

	// A registry showing another history than the one saved.
	fork := &bundleFake{key: f.key, tr: testonly.New(rfc6962.DefaultHasher)}
	fork.add(t, authFailure(), f.decision(t, "acme", "initech"), authFailure(), authFailure(), authFailure())
	code, _, stderr = runCLI(startBundleFake(t, fork), "audit", "verify", "--sth", oldFile)
	require.Equal(t, exitError, code)
	require.Contains(t, stderr, "does not verify")

	// Signed by another key than the one trusted.
	code, _, stderr = runCLI(env, "audit", "verify", "--sth", oldFile, "--registry-key", newBundleFake(t).vkey(t))
	require.Equal(t, exitError, code, stderr)
}

func TestAuditReplayCmd(t *testing.T) {
	f := newBundleFake(t)
	f.add(t, authFailure(), authFailure(), authFailure())
	env := startBundleFake(t, f)
	code, stdout, stderr := runCLI(env, "audit", "replay", "--registry-key", f.vkey(t))
	require.Equal(t, exitOK, code, stderr)
	require.Regexp(t, `Mismatches:\s+0`, stdout)
	require.Contains(t, stderr, "entries replayed")

	// A decision about organisations the log never registered.
	f.add(t, f.decision(t, "acme", "globex"))
	code, stdout, stderr = runCLI(env, "audit", "replay")
	require.Equal(t, exitError, code)
	require.Regexp(t, `Mismatches:\s+1`, stdout)
	require.Contains(t, stdout, "entry 3 (DECISION)")
	require.Contains(t, stderr, "replay found 1 entries")
}
