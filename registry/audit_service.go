package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/audit"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// auditService implements trustfedv1.AuditService on the shared core.
type auditService struct {
	trustfedv1.UnsafeAuditServiceServer
	*Server
}

const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
	// auditScanBudget bounds the entries one page examines, so a filter
	// matching nothing answers quickly with a token to go on from.
	auditScanBudget = 20000
	// CheckpointInterval is how often the leader publishes a checkpoint
	// while the log grows.
	CheckpointInterval = time.Second
)

// errNoAudit: this server keeps no audit log (tests only).
var errNoAudit = status.Error(codes.Unimplemented, "this registry server keeps no audit log")

// errNoCheckpoint: no checkpoint was committed yet.
var errNoCheckpoint = status.Error(codes.Unavailable, "no audit checkpoint is published yet (the leader publishes one every second while the log grows): retry shortly")

// GetSignedTreeHead returns the newest checkpoint with its cosignatures.
func (s *auditService) GetSignedTreeHead(ctx context.Context, req *trustfedv1.GetSignedTreeHeadRequest) (*trustfedv1.GetSignedTreeHeadResponse, error) {
	if s.audit == nil {
		return nil, errNoAudit
	}
	if req.MinCosignatures > 100 {
		return nil, state.Invalid("min_cosignatures", "at most 100")
	}
	r, meta, err := s.read(ctx, req.Consistency)
	if err != nil {
		return nil, err
	}
	cp, ok := r.LatestCosignedCheckpoint(int(req.MinCosignatures))
	if !ok {
		if req.MinCosignatures > 0 {
			return nil, state.NotFound("min_cosignatures", "no kept checkpoint has %d cosignatures", req.MinCosignatures)
		}
		return nil, errNoCheckpoint
	}
	return s.treeHead(r, cp, meta)
}

func (s *Server) treeHead(r *state.Reader, cp *commandv1.StoredCheckpoint, meta *trustfedv1.ReadMeta) (*trustfedv1.GetSignedTreeHeadResponse, error) {
	c, err := checkpointOf(cp.Note)
	if err != nil {
		return nil, err
	}
	note := bytes.Clone(cp.Note)
	witnesses := make([]string, 0, len(cp.Cosignatures))
	for _, co := range cp.Cosignatures {
		note = append(note, co.SignatureLine...)
		note = append(note, '\n')
		witnesses = append(witnesses, co.OrganizationId)
	}
	resp := &trustfedv1.GetSignedTreeHeadResponse{
		Checkpoint: note, Origin: c.Origin, TreeSize: c.Size, RootHash: c.Root,
		Witnesses: witnesses, Time: cp.Time, LogSize: s.audit.Size(), Meta: meta,
	}
	// A checkpoint signed by the registry key names its verifier key; a
	// certified one (trust-state line, node signatures) has none: it is
	// verified against the node keys of GET /v1/keys.
	if pub, ok := s.registryPublicKey(r); ok && c.State == nil {
		resp.VerifierKey, _ = attestation.CheckpointVerifierKey(c.Origin, pub)
	}
	return resp, nil
}

func checkpointOf(note []byte) (attestation.Checkpoint, error) {
	text, _, err := attestation.SplitNote(note)
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("stored checkpoint: %w", err)
	}
	c, err := attestation.ParseCheckpoint([]byte(text))
	if err != nil {
		return attestation.Checkpoint{}, fmt.Errorf("stored checkpoint: %w", err)
	}
	return c, nil
}

func (s *Server) registryPublicKey(r *state.Reader) (ed25519.PublicKey, bool) {
	k, ok := r.NewestSigningKey()
	if !ok || len(k.PrivateSeed) != ed25519.SeedSize {
		return nil, false
	}
	return ed25519.NewKeyFromSeed(k.PrivateSeed).Public().(ed25519.PublicKey), true
}

// auditTreeSize is the tree size proofs are given in: the one asked for
// (any size up to the log's: the client checks the proofs against a signed
// head it holds) or the newest checkpoint's.
func (s *Server) auditTreeSize(r *state.Reader, asked uint64, field string) (uint64, error) {
	if asked != 0 {
		if asked > s.audit.Size() {
			return 0, state.Invalid(field, "the log has %d entries, not %d", s.audit.Size(), asked)
		}
		return asked, nil
	}
	cp, ok := r.LatestCheckpoint()
	if !ok {
		return 0, errNoCheckpoint
	}
	return cp.TreeSize, nil
}

// ListAuditEntries pages through the log in order with filters: check the
// request, fix the range of sequence numbers it asks for, scan it for the
// entries that carry every label asked for, prove them if asked.
func (s *auditService) ListAuditEntries(ctx context.Context, req *trustfedv1.ListAuditEntriesRequest) (*trustfedv1.ListAuditEntriesResponse, error) {
	if s.audit == nil {
		return nil, errNoAudit
	}
	org, err := auditFilter(req.OrganizationId)
	if err != nil {
		return nil, err
	}
	size, err := auditPageSize(req)
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.Consistency)
	if err != nil {
		return nil, err
	}
	rg, err := s.listRange(r, req)
	if err != nil {
		return nil, err
	}
	resp := &trustfedv1.ListAuditEntriesResponse{TreeSize: rg.treeSize, Meta: meta}
	if m, ok := complianceModes[req.Compliance]; ok {
		resp.Retention, resp.Handling = m.retention, m.handling
	}
	if rg.from >= rg.to {
		return resp, nil
	}
	var resume uint64
	if resp.Records, resume, err = s.scanAudit(auditLabels(org, req), rg, size); err != nil {
		return nil, err
	}
	if req.WithProofs {
		if err := s.proveInclusion(resp.Records, rg.treeSize); err != nil {
			return nil, err
		}
	}
	if resume < rg.to {
		resp.NextPageToken = strconv.FormatUint(resume, 10)
	}
	return resp, nil
}

// auditPageSize checks a listing's filters and returns its page size.
func auditPageSize(req *trustfedv1.ListAuditEntriesRequest) (int32, error) {
	size := req.PageSize
	switch {
	case size < 0 || size > maxAuditPage:
		return 0, state.Invalid("page_size", "must be 1..%d", maxAuditPage)
	case size == 0:
		size = defaultAuditPage
	}
	if len(req.Type) > 64 {
		return 0, state.Invalid("type", "is longer than 64 characters")
	}
	if req.Type != "" && !state.IsAuditType(req.Type) {
		return 0, state.Invalid("type", "%q is not an audit entry type", req.Type)
	}
	if _, ok := trustfedv1.ComplianceMode_name[int32(req.Compliance)]; !ok {
		return 0, state.Invalid("compliance", "unknown compliance mode %d", int32(req.Compliance))
	}
	if req.Since != nil && req.Until != nil && !req.Since.AsTime().Before(req.Until.AsTime()) {
		return 0, state.Invalid("until", "must be after since")
	}
	return size, nil
}

// auditRange is the sequence numbers [from, to) a listing reads, in a tree
// of treeSize entries.
type auditRange struct {
	treeSize, from, to uint64
}

// listRange turns a listing's tree size, times and page token into the
// sequence numbers it reads.
func (s *auditService) listRange(r *state.Reader, req *trustfedv1.ListAuditEntriesRequest) (auditRange, error) {
	rg := auditRange{treeSize: s.audit.Size()}
	var err error
	if req.WithProofs || req.TreeSize != 0 {
		if rg.treeSize, err = s.auditTreeSize(r, req.TreeSize, "tree_size"); err != nil {
			return rg, err
		}
	}
	rg.to = rg.treeSize
	if req.Since != nil {
		if rg.from, err = s.audit.SeqAtTime(req.Since.AsTime()); err != nil {
			return rg, fmt.Errorf("audit: %w", err)
		}
	}
	if req.Until != nil {
		if rg.to, err = s.audit.SeqAtTime(req.Until.AsTime()); err != nil {
			return rg, fmt.Errorf("audit: %w", err)
		}
		rg.to = min(rg.to, rg.treeSize)
	}
	if req.PageToken != "" {
		start, err := strconv.ParseUint(req.PageToken, 10, 64)
		if err != nil {
			return rg, state.Invalid("page_token", "is not a token this API returned")
		}
		rg.from = max(rg.from, start)
	}
	return rg, nil
}

// auditLabels are the labels every entry listed must carry, the most
// selective first (the one the scan walks).
func auditLabels(org string, req *trustfedv1.ListAuditEntriesRequest) []string {
	var labels []string
	if org != "" {
		labels = append(labels, state.LabelOrg+org)
	}
	if req.Type != "" {
		labels = append(labels, state.LabelType+req.Type)
	}
	if req.Compliance != trustfedv1.ComplianceMode_COMPLIANCE_MODE_UNSPECIFIED {
		labels = append(labels, state.LabelMode+state.ModeName(req.Compliance))
	}
	return labels
}

// scanAudit takes up to size entries of rg that carry every label, walking
// the first label's index, and returns them with where the next page
// resumes.
func (s *auditService) scanAudit(labels []string, rg auditRange, size int32) ([]*trustfedv1.AuditRecord, uint64, error) {
	primary := ""
	if len(labels) > 0 {
		primary = labels[0]
	}
	var records []*trustfedv1.AuditRecord
	resume, err := s.audit.Scan(primary, rg.from, rg.to, auditScanBudget, func(seq uint64, leaf audit.Leaf) (bool, error) {
		if !hasAll(leaf.Labels, labels) {
			return true, nil
		}
		rec := &trustfedv1.AuditRecord{Sequence: seq, Leaf: bytes.Clone(leaf.Data), Entry: &trustfedv1.AuditEntry{}}
		if err := proto.Unmarshal(rec.Leaf, rec.Entry); err != nil {
			return false, fmt.Errorf("audit entry %d does not decode: %w", seq, err)
		}
		records = append(records, rec)
		return len(records) < int(size), nil // Scan resumes after the last entry taken
	})
	if err != nil {
		return nil, 0, fmt.Errorf("audit: %w", err)
	}
	return records, resume, nil
}

// proveInclusion adds to each record its inclusion proof in the tree of
// treeSize entries.
func (s *auditService) proveInclusion(records []*trustfedv1.AuditRecord, treeSize uint64) error {
	for _, rec := range records {
		var err error
		if rec.InclusionProof, err = s.audit.InclusionProof(rec.Sequence, treeSize); err != nil {
			return fmt.Errorf("audit proof of %d: %w", rec.Sequence, err)
		}
	}
	return nil
}

// hasAll reports whether have holds every label of want.
func hasAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// auditFilter is the organisation a listing asks for ("" = every one). An
// organisation-scoped caller has already been confined to its own by the
// authorisation table (auth.go), which fills it in when the caller left it
// empty.
func auditFilter(asked string) (string, error) {
	if asked != "" {
		if err := state.ValidateOrganizationID("organization_id", asked); err != nil {
			return "", err
		}
	}
	return asked, nil
}

// GetInclusionProof proves one entry.
func (s *auditService) GetInclusionProof(ctx context.Context, req *trustfedv1.GetInclusionProofRequest) (*trustfedv1.GetInclusionProofResponse, error) {
	if s.audit == nil {
		return nil, errNoAudit
	}
	r, meta, err := s.read(ctx, req.Consistency)
	if err != nil {
		return nil, err
	}
	size, err := s.auditTreeSize(r, req.TreeSize, "tree_size")
	if err != nil {
		return nil, err
	}
	if req.Sequence >= size {
		return nil, state.Invalid("sequence", "entry %d is not in the tree of %d entries", req.Sequence, size)
	}
	leaf, err := s.audit.Entry(req.Sequence)
	if err != nil {
		return nil, fmt.Errorf("audit entry %d: %w", req.Sequence, err)
	}
	if org := principalOrg(ctx); org != "" {
		var e trustfedv1.AuditEntry
		if proto.Unmarshal(leaf, &e) != nil || !slices.Contains(e.OrganizationIds, org) {
			return nil, state.PermissionDenied("sequence", "entry %d does not name %s", req.Sequence, org)
		}
	}
	hashes, err := s.audit.InclusionProof(req.Sequence, size)
	if err != nil {
		return nil, fmt.Errorf("audit proof: %w", err)
	}
	return &trustfedv1.GetInclusionProofResponse{Sequence: req.Sequence, TreeSize: size, Hashes: hashes, Leaf: leaf, Meta: meta}, nil
}

// GetConsistencyProof proves a tree is a prefix of a later one.
func (s *auditService) GetConsistencyProof(ctx context.Context, req *trustfedv1.GetConsistencyProofRequest) (*trustfedv1.GetConsistencyProofResponse, error) {
	if s.audit == nil {
		return nil, errNoAudit
	}
	r, meta, err := s.read(ctx, req.Consistency)
	if err != nil {
		return nil, err
	}
	second, err := s.auditTreeSize(r, req.Second, "second")
	if err != nil {
		return nil, err
	}
	if req.First > second {
		return nil, state.Invalid("first", "%d is larger than second (%d)", req.First, second)
	}
	var hashes [][]byte
	if req.First > 0 {
		if hashes, err = s.audit.ConsistencyProof(req.First, second); err != nil {
			return nil, fmt.Errorf("audit proof: %w", err)
		}
	}
	return &trustfedv1.GetConsistencyProofResponse{First: req.First, Second: second, Hashes: hashes, Meta: meta}, nil
}

// AddCosignature records a witness cosignature on a kept checkpoint.
func (s *auditService) AddCosignature(ctx context.Context, req *trustfedv1.AddCosignatureRequest) (*trustfedv1.AddCosignatureResponse, error) {
	if s.audit == nil {
		return nil, errNoAudit
	}
	if err := state.ValidateOrganizationID("organization_id", req.OrganizationId); err != nil {
		return nil, err
	}
	if len(req.Checkpoint) == 0 || len(req.Checkpoint) > 64<<10 {
		return nil, state.Invalid("checkpoint", "must be a signed checkpoint of at most 64 KiB")
	}
	c, err := checkpointOf(req.Checkpoint)
	if err != nil {
		return nil, state.Invalid("checkpoint", "%v", err)
	}
	line, err := cosignatureLine(req.Checkpoint, req.OrganizationId)
	if err != nil {
		return nil, err
	}
	r, _, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	cp, ok := r.Checkpoint(c.Size)
	if !ok {
		return nil, state.NotFound("checkpoint", "no kept checkpoint of %d entries", c.Size)
	}
	published, _, err := attestation.SplitNote(cp.Note)
	if err != nil {
		return nil, fmt.Errorf("stored checkpoint: %w", err)
	}
	if text, _, _ := attestation.SplitNote(req.Checkpoint); text != published {
		return nil, state.Invalid("checkpoint", "is not the checkpoint the registry published for %d entries", c.Size)
	}
	if _, _, err := s.proposeInTerm(ctx, &commandv1.AddCosignature{TreeSize: c.Size, OrganizationId: req.OrganizationId, SignatureLine: line}, ""); err != nil {
		return nil, err
	}
	cp, _ = s.store.Read().Checkpoint(c.Size)
	resp := &trustfedv1.AddCosignatureResponse{TreeSize: c.Size}
	for _, co := range cp.GetCosignatures() {
		resp.Witnesses = append(resp.Witnesses, co.OrganizationId)
	}
	return resp, nil
}

// cosignatureLine finds the signature line of witness name in a note.
func cosignatureLine(note []byte, name string) (string, error) {
	_, sigs, err := attestation.SplitNote(note)
	if err != nil {
		return "", state.Invalid("checkpoint", "is not a signed note")
	}
	var found string
	for _, line := range sigs {
		if !attestation.SignedBy(line, name) {
			continue
		}
		if _, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(line, "— "+name+" ")); err != nil {
			return "", state.Invalid("checkpoint", "cosignature of %s is not base64", name)
		}
		// The served note may carry the witness's earlier cosignature: the
		// new one is appended after it.
		found = line
	}
	if found == "" {
		return "", state.Invalid("checkpoint", "carries no signature named %s (the witness name is the organization id)", name)
	}
	return found, nil
}

// complianceModes is the retention and handling each view reports (see
// docs/audit.md; AG-783 asks 7 years for E01, E03–E06).
var complianceModes = map[trustfedv1.ComplianceMode]struct{ retention, handling string }{
	trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA: {
		"6 years from creation (45 CFR 164.316(b)(2)); AG-783 evidence 7 years",
		"access decisions on interactions carrying identifiers, authentication failures, agreements, sessions, admin and revocation events",
	},
	trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2: {
		"the audit period plus 1 year (AICPA practice); AG-783 evidence 7 years",
		"every entry: change management, access control, monitoring",
	},
	trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR: {
		"no longer than needed for the purpose (Art. 5(1)(e)); AG-783 evidence 7 years, kept pseudonymised",
		"principals, presented identities and caller addresses are stored as keyed pseudonyms while the federation runs in GDPR mode (Art. 4(5), 32)",
	},
}
