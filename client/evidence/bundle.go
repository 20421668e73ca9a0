package evidence

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Format names the bundle format (manifest.json "format").
const Format = "trustfed-evidence/v1"

// Names of the files of a bundle besides the evidence files.
const (
	FileManifest   = "manifest.json"
	FileCheckpoint = "checkpoint.txt"
	FileKeys       = "keys.json"
	FileEntries    = "entries.jsonl"
)

// Files lists the files of a bundle in archive order.
func Files() []string {
	out := []string{FileManifest, FileCheckpoint, FileKeys, FileEntries}
	for _, a := range artefacts {
		out = append(out, a.file)
	}
	return out
}

// ErrBundle: an evidence bundle does not verify (or cannot be built from
// the input given).
var ErrBundle = errors.New("evidence bundle does not verify")

// Filters select the entries of a bundle, as ListAuditEntries does.
type Filters struct {
	// Compliance view (UNSPECIFIED: every entry).
	Compliance trustfedv1.ComplianceMode
	// Entries at or after Since and before Until (zero: unbounded).
	Since, Until time.Time
	// Only entries naming this organisation ("" = all).
	OrganizationID string
}

// matches reports whether an entry is one the filters select.
func (f Filters) matches(e *trustfedv1.AuditEntry) bool {
	t := e.GetTime().AsTime()
	switch {
	case !f.Since.IsZero() && t.Before(f.Since):
		return false
	case !f.Until.IsZero() && !t.Before(f.Until):
		return false
	case f.Compliance != trustfedv1.ComplianceMode_COMPLIANCE_MODE_UNSPECIFIED && !slices.Contains(e.Compliance, f.Compliance):
		return false
	case f.OrganizationID != "" && !slices.Contains(e.OrganizationIds, f.OrganizationID):
		return false
	}
	return true
}

// MarshalJSON writes the filters as the manifest states them.
func (f Filters) MarshalJSON() ([]byte, error) { return json.Marshal(f.render()) }

// filtersJSON is how the manifest and the evidence files state the filters.
type filtersJSON struct {
	Compliance     string `json:"compliance"`
	Since          string `json:"since"`
	Until          string `json:"until"`
	OrganizationID string `json:"organization_id"`
}

func (f Filters) render() filtersJSON {
	out := filtersJSON{OrganizationID: f.OrganizationID}
	if f.Compliance != trustfedv1.ComplianceMode_COMPLIANCE_MODE_UNSPECIFIED {
		out.Compliance = strings.TrimPrefix(f.Compliance.String(), "COMPLIANCE_MODE_")
	}
	if !f.Since.IsZero() {
		out.Since = f.Since.UTC().Format(time.RFC3339Nano)
	}
	if !f.Until.IsZero() {
		out.Until = f.Until.UTC().Format(time.RFC3339Nano)
	}
	return out
}

func (fj filtersJSON) parse() (Filters, error) {
	f := Filters{OrganizationID: fj.OrganizationID}
	if fj.Compliance != "" {
		v, ok := trustfedv1.ComplianceMode_value["COMPLIANCE_MODE_"+fj.Compliance]
		if !ok || v == 0 {
			return f, fmt.Errorf("unknown compliance view %q", fj.Compliance)
		}
		f.Compliance = trustfedv1.ComplianceMode(v)
	}
	for _, t := range []struct {
		s   string
		dst *time.Time
	}{{fj.Since, &f.Since}, {fj.Until, &f.Until}} {
		if t.s == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339Nano, t.s)
		if err != nil {
			return f, fmt.Errorf("filter time %q: %v", t.s, err)
		}
		*t.dst = v
	}
	return f, nil
}

// Input is what a bundle is built from.
type Input struct {
	// TreeHead is the signed tree head every record's inclusion proof is in
	// (its checkpoint and verifier key are copied into the bundle).
	TreeHead *trustfedv1.GetSignedTreeHeadResponse
	// Keys are the registry's public keys (GetKeys).
	Keys *trustfedv1.GetKeysResponse
	// Filters the records were selected with (they must all match).
	Filters Filters
	// Created is the bundle's creation time (zero: now).
	Created time.Time
	// Next yields the records in log order with their inclusion proofs in
	// the tree of TreeHead; ok is false after the last.
	Next func() (rec *trustfedv1.AuditRecord, ok bool, err error)
	// Total is the number of records expected, for progress (0: unknown).
	Total int
}

// FileDigest is a file's size and SHA-256 (hex), as the manifest lists it.
type FileDigest struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// manifest is manifest.json.
type manifest struct {
	Format      string       `json:"format"`
	Created     string       `json:"created"`
	Filters     filtersJSON  `json:"filters"`
	Origin      string       `json:"origin"`
	TreeSize    uint64       `json:"tree_size"`
	RootHash    string       `json:"root_hash"`
	VerifierKey string       `json:"verifier_key"`
	Cosigners   []string     `json:"cosigners"`
	EntryCount  int          `json:"entry_count"`
	Files       []FileDigest `json:"files"`
	Note        string       `json:"note"`
	Digest      string       `json:"manifest_sha256"`
}

const manifestNote = "Only the entries are signed (checkpoint.txt, the inclusion proofs, the decision signatures); every other file is derived from them and listed here with its SHA-256. manifest_sha256 is the SHA-256 of this file with manifest_sha256 empty: it detects any change of the manifest, it does not authenticate who built the bundle."

// render is the manifest's bytes, its digest computed.
func (m manifest) render() ([]byte, error) {
	m.Digest = ""
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append(b, '\n'))
	m.Digest = hex.EncodeToString(sum[:])
	if b, err = json.MarshalIndent(m, "", "  "); err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// keyJSON is one registry key in keys.json.
type keyJSON struct {
	KeyID        string `json:"key_id"`
	Algorithm    string `json:"algorithm"`
	PublicKey    string `json:"public_key"`
	PublicKeyPEM string `json:"public_key_pem"`
	CreateTime   string `json:"create_time"`
	// The note verifier key this key verifies the log's checkpoints with
	// (the registry key of a cluster without node keys).
	CheckpointVerifierKey string `json:"checkpoint_verifier_key,omitempty"`
	// An endorsed registry node key: its node and validity (the nodes
	// certify checkpoints with these keys; see attestation.VerifyCertifiedCheckpoint).
	NodeID     string `json:"node_id,omitempty"`
	ValidFrom  string `json:"valid_from,omitempty"`
	ValidUntil string `json:"valid_until,omitempty"`
	RevokeTime string `json:"revoke_time,omitempty"`
}

type keysJSON struct {
	Keys []keyJSON `json:"keys"`
}

// renderKeys is keys.json, after checking every key.
func renderKeys(keys []*trustfedv1.RegistryKey, origin string) ([]byte, map[string]ed25519.PublicKey, error) {
	doc := keysJSON{Keys: []keyJSON{}}
	byID := map[string]ed25519.PublicKey{}
	for _, k := range keys {
		pub := ed25519.PublicKey(k.GetPublicKey())
		if len(pub) != ed25519.PublicKeySize || k.GetAlgorithm() != "Ed25519" {
			return nil, nil, fmt.Errorf("registry key %q is not an Ed25519 key", k.GetKeyId())
		}
		if fp := attestation.Fingerprint(pub); fp != k.GetKeyId() {
			return nil, nil, fmt.Errorf("registry key %q: its fingerprint is %s", k.GetKeyId(), fp)
		}
		if pemPub, err := attestation.ParsePublicKeyPEM([]byte(k.GetPublicKeyPem())); err != nil || !pemPub.Equal(pub) {
			return nil, nil, fmt.Errorf("registry key %q: its PEM is not the same key", k.GetKeyId())
		}
		if _, dup := byID[k.GetKeyId()]; dup {
			return nil, nil, fmt.Errorf("registry key %q is listed twice", k.GetKeyId())
		}
		kj := keyJSON{KeyID: k.GetKeyId(), Algorithm: k.GetAlgorithm(), PublicKey: b64(pub),
			PublicKeyPEM: k.GetPublicKeyPem(), CreateTime: ts(k.GetCreateTime()), NodeID: k.GetNodeId()}
		if kj.NodeID == "" {
			vkey, err := attestation.CheckpointVerifierKey(origin, pub)
			if err != nil {
				return nil, nil, err
			}
			kj.CheckpointVerifierKey = vkey
		} else {
			kj.ValidFrom, kj.ValidUntil, kj.RevokeTime = ts(k.GetValidFrom()), ts(k.GetValidUntil()), ts(k.GetRevokeTime())
		}
		byID[k.GetKeyId()] = pub
		doc.Keys = append(doc.Keys, kj)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	return append(b, '\n'), byID, nil
}

// entryLine is one line of entries.jsonl.
type entryLine struct {
	Sequence       uint64          `json:"sequence"`
	Leaf           string          `json:"leaf"`
	InclusionProof []string        `json:"inclusion_proof"`
	Entry          json.RawMessage `json:"entry"`
}

func renderEntryLine(seq uint64, leaf []byte, hashes [][]byte, e *trustfedv1.AuditEntry) ([]byte, error) {
	l := entryLine{Sequence: seq, Leaf: base64.StdEncoding.EncodeToString(leaf), InclusionProof: make([]string, len(hashes)), Entry: pjson(e)}
	for i, h := range hashes {
		l.InclusionProof[i] = base64.StdEncoding.EncodeToString(h)
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// cosigners names the signers of a signed note other than the registry
// (origin), in order: the witnesses whose cosignature lines it carries.
func cosigners(note []byte, origin string) []string {
	out := []string{}
	_, sigs, err := attestation.SplitNote(note)
	if err != nil {
		return out
	}
	for _, line := range sigs {
		rest, ok := strings.CutPrefix(line, "— ")
		if !ok {
			continue
		}
		if name, _, ok := strings.Cut(rest, " "); ok && name != origin && !strings.HasPrefix(name, attestation.NodeSignerPrefix) {
			out = append(out, name)
		}
	}
	return out
}

// unverifiedCheckpoint reads a signed checkpoint (with its trust-state
// line, if certified) without verifying it.
func unverifiedCheckpoint(signed []byte) (attestation.Checkpoint, error) {
	text, _, err := attestation.SplitNote(signed)
	if err != nil {
		return attestation.Checkpoint{}, err
	}
	return attestation.ParseCheckpoint([]byte(text))
}

// checkRecord checks one record against the tree and returns its entry,
// decoded from the proven leaf bytes.
func checkRecord(seq uint64, leaf []byte, hashes [][]byte, cp attestation.Checkpoint, prev *uint64) (*trustfedv1.AuditEntry, error) {
	if prev != nil && seq <= *prev {
		return nil, fmt.Errorf("entry %d follows entry %d: entries must be in log order", seq, *prev)
	}
	if seq >= cp.Size {
		return nil, fmt.Errorf("entry %d is beyond the signed tree of %d entries", seq, cp.Size)
	}
	if err := client.VerifyInclusion(leaf, seq, hashes, cp); err != nil {
		return nil, err
	}
	var e trustfedv1.AuditEntry
	if err := proto.Unmarshal(leaf, &e); err != nil {
		return nil, fmt.Errorf("entry %d does not decode: %v", seq, err)
	}
	if e.Sequence != seq {
		return nil, fmt.Errorf("the leaf at %d says it is entry %d", seq, e.Sequence)
	}
	return &e, nil
}

// Build writes the evidence bundle of in to w (see the package doc). It
// checks every record's inclusion proof against the tree head and that it
// matches the filters, and calls progress (if not nil) after each record
// with the records done and in.Total. It does not check the tree head's
// signature (Export does, and Verify does on the bundle).
func Build(w io.Writer, in Input, progress func(done, total int)) (err error) {
	if in.TreeHead == nil || in.Keys == nil || in.Next == nil {
		return fmt.Errorf("%w: build needs a tree head, the registry keys and records", ErrBundle)
	}
	cp, err := unverifiedCheckpoint(in.TreeHead.Checkpoint)
	if err != nil {
		return fmt.Errorf("%w: tree head: %v", ErrBundle, err)
	}
	if cp.Size != in.TreeHead.TreeSize || !slices.Equal(cp.Root, in.TreeHead.RootHash) || cp.Origin != in.TreeHead.Origin {
		return fmt.Errorf("%w: the tree head's fields disagree with its checkpoint", ErrBundle)
	}
	if in.TreeHead.VerifierKey == "" && cp.State == nil {
		return fmt.Errorf("%w: the tree head names no verifier key and is not certified by the registry nodes", ErrBundle)
	}
	created := in.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC().Truncate(time.Second)
	keys, _, err := renderKeys(in.Keys.Keys, cp.Origin)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBundle, err)
	}

	b := &builder{entries: newSpool()}
	defer func() { err = errors.Join(err, b.close()) }()
	var sinks [numArtefacts]io.Writer
	for i := range b.files {
		b.files[i] = newSpool()
		sinks[i] = b.files[i]
	}
	tree := treeJSON{logRef: logRef{Origin: cp.Origin, TreeSize: cp.Size, RootHash: b64(cp.Root)},
		VerifierKey: in.TreeHead.VerifierKey, Cosigners: cosigners(in.TreeHead.Checkpoint, cp.Origin)}
	filters := in.Filters.render()
	d := newDeriver(tree, filters, sinks)
	n := 0
	var prev *uint64
	for {
		rec, ok, err := in.Next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		seq := rec.GetSequence()
		e, err := checkRecord(seq, rec.GetLeaf(), rec.GetInclusionProof(), cp, prev)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBundle, err)
		}
		if !in.Filters.matches(e) {
			return fmt.Errorf("%w: entry %d does not match the filters", ErrBundle, seq)
		}
		prev = &seq
		line, err := renderEntryLine(seq, rec.GetLeaf(), rec.GetInclusionProof(), e)
		if err != nil {
			return fmt.Errorf("render entry %d: %w", seq, err)
		}
		if _, err := b.entries.Write(line); err != nil {
			return err
		}
		d.add(e)
		n++
		if progress != nil {
			progress(n, in.Total)
		}
	}
	if err := d.finish(); err != nil {
		return err
	}
	m := manifest{Format: Format, Created: created.Format(time.RFC3339), Filters: filters,
		Origin: cp.Origin, TreeSize: cp.Size, RootHash: b64(cp.Root), VerifierKey: in.TreeHead.VerifierKey,
		Cosigners: tree.Cosigners, EntryCount: n, Note: manifestNote}
	members := []member{
		{name: FileCheckpoint, data: in.TreeHead.Checkpoint},
		{name: FileKeys, data: keys},
		{name: FileEntries, spool: b.entries},
	}
	for i, a := range artefacts {
		members = append(members, member{name: a.file, spool: b.files[i]})
	}
	for _, mb := range members {
		m.Files = append(m.Files, mb.digest())
	}
	mdata, err := m.render()
	if err != nil {
		return err
	}
	return writeArchive(w, created, append([]member{{name: FileManifest, data: mdata}}, members...))
}

type builder struct {
	entries *spool
	files   [numArtefacts]*spool
}

func (b *builder) close() error {
	errs := []error{b.entries.close()}
	for _, f := range b.files {
		if f != nil {
			errs = append(errs, f.close())
		}
	}
	return errors.Join(errs...)
}

// member is one file of the archive, in memory or spooled.
type member struct {
	name  string
	data  []byte
	spool *spool
}

func (m member) digest() FileDigest {
	if m.spool != nil {
		d := m.spool.digest()
		d.Name = m.name
		return d
	}
	sum := sha256.Sum256(m.data)
	return FileDigest{Name: m.name, Size: int64(len(m.data)), SHA256: hex.EncodeToString(sum[:])}
}

// gzipHeader is the header every bundle's gzip stream starts with: no
// name, no time, default compression, OS unknown (what gzip.Writer writes
// with a zero Header). Verify requires it, so that no header byte goes
// unchecked.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}

// tarHeader is the header of every member: the archive is the same bytes
// whenever it is built from the same files.
func tarHeader(name string, size int64, created time.Time) *tar.Header {
	return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: created, Format: tar.FormatUSTAR}
}

func writeArchive(w io.Writer, created time.Time, members []member) error {
	return writeArchiveLevel(w, created, members, gzip.DefaultCompression)
}

// writeArchiveLevel writes the archive with a gzip compression level whose
// header is the same (not BestSpeed or BestCompression).
func writeArchiveLevel(w io.Writer, created time.Time, members []member, level int) error {
	zw, err := gzip.NewWriterLevel(w, level)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(zw)
	for _, m := range members {
		var r io.Reader
		size := int64(len(m.data))
		if m.spool != nil {
			if r, err = m.spool.reader(); err != nil {
				return err
			}
			size = m.spool.n
		} else {
			r = bytes.NewReader(m.data)
		}
		if err := tw.WriteHeader(tarHeader(m.name, size, created)); err != nil {
			return fmt.Errorf("write %s: %w", m.name, err)
		}
		if _, err := io.Copy(tw, r); err != nil {
			return fmt.Errorf("write %s: %w", m.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}
