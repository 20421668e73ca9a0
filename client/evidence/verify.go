package evidence

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Limits of what Verify reads.
const (
	maxSmallFile = 16 << 20 // manifest, checkpoint, keys
	maxLine      = 64 << 20 // one line of entries.jsonl
)

// Report is what Verify checked.
type Report struct {
	Format  string    `json:"format"`
	Created time.Time `json:"created"`
	Filters Filters   `json:"filters"`
	// The signed tree every entry is proven in.
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	RootHash []byte `json:"root_hash"`
	// VerifierKey verified the checkpoint. KeyPinned: it is the key the
	// caller trusts; otherwise it is the key the bundle itself names, which
	// shows the bundle is intact and consistent, not that the registry you
	// trust signed it.
	VerifierKey string `json:"verifier_key"`
	KeyPinned   bool   `json:"key_pinned"`
	// CertifiedBy are the registry nodes whose signatures certified the
	// checkpoint (a quorum of the node keys in keys.json; empty for a
	// checkpoint signed by the registry key). Those keys come from the
	// bundle itself: compare them with GET /v1/keys of the registry you
	// trust.
	CertifiedBy []string `json:"certified_by,omitempty"`
	// Cosigners are the witnesses whose cosignature lines the checkpoint
	// carries (not verified: their keys are not in the bundle).
	Cosigners []string `json:"cosigners"`
	// KeyIDs are the registry keys of keys.json.
	KeyIDs []string `json:"key_ids"`
	// Entries verified, the first and last sequence, how many of each type.
	Entries       int            `json:"entries"`
	FirstSequence uint64         `json:"first_sequence"`
	LastSequence  uint64         `json:"last_sequence"`
	Types         map[string]int `json:"types"`
	// Decisions whose registry signature verified.
	Decisions int `json:"decisions"`
	// Files of the archive as verified.
	Files []FileDigest `json:"files"`
}

// Verify checks an evidence bundle with public keys only: the checkpoint's
// signature by the registry key vkey ("" = the key the bundle names, which
// the report then says), every entry's inclusion proof in it, that each leaf
// decodes to the entry of its sequence and matches the bundle's filters,
// every decision's registry signature, every file's SHA-256 in the
// manifest; it recomputes every evidence file and the manifest from the
// entries and requires byte equality, and requires the archive itself to
// be exactly the one Build writes for those files. Any change makes it
// fail with an error wrapping ErrBundle.
func Verify(r io.Reader, vkey string) (Report, error) {
	v := &verifier{vkey: vkey, rep: Report{Types: map[string]int{}}}
	if err := v.run(r); err != nil {
		return v.rep, fmt.Errorf("%w: %v", ErrBundle, err)
	}
	return v.rep, nil
}

type verifier struct {
	vkey string
	rep  Report

	tr       *tar.Reader
	canon    *tar.Writer
	created  time.Time
	manifest manifest
	files    []FileDigest // as found, in order
	// checkpoint is checkpoint.txt when it is certified by the registry
	// nodes (verified once keys.json is read).
	checkpoint []byte
}

func (v *verifier) run(r io.Reader) error {
	br := bufio.NewReader(r)
	if head, err := br.Peek(len(gzipHeader)); err != nil || !bytes.Equal(head, gzipHeader) {
		return errors.New("not an evidence bundle: the archive does not start with the gzip header Build writes")
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return fmt.Errorf("gzip: %v", err)
	}
	zr.Multistream(false)
	raw, canon := sha256.New(), sha256.New()
	body := io.TeeReader(zr, raw)
	v.tr, v.canon = tar.NewReader(body), tar.NewWriter(canon)

	mdata, err := v.readManifest()
	if err != nil {
		return err
	}
	cp, err := v.readCheckpoint()
	if err != nil {
		return err
	}
	keys, err := v.readKeys(cp)
	if err != nil {
		return err
	}
	tree := treeJSON{logRef: logRef{Origin: cp.Origin, TreeSize: cp.Size, RootHash: b64(cp.Root)}, VerifierKey: v.rep.VerifierKey, Cosigners: v.rep.Cosigners}
	sinks, derived := [numArtefacts]io.Writer{}, [numArtefacts]*hashSink{}
	for i := range sinks {
		derived[i] = newHashSink()
		sinks[i] = derived[i]
	}
	d := newDeriver(tree, v.manifest.Filters, sinks)
	if err := v.readEntries(cp, keys, d); err != nil {
		return err
	}
	if err := d.finish(); err != nil {
		return err
	}
	for i, a := range artefacts {
		if err := v.readArtefact(a.file, derived[i].digest()); err != nil {
			return err
		}
	}

	// The archive: nothing after the last file, every header and padding
	// byte as Build writes them, the gzip stream whole and alone.
	if _, err := v.tr.Next(); err != io.EOF {
		return fmt.Errorf("the archive holds more than the %d files of a bundle", len(Files()))
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return fmt.Errorf("gzip: %v", err)
	}
	if err := v.canon.Close(); err != nil {
		return err
	}
	if !bytes.Equal(raw.Sum(nil), canon.Sum(nil)) {
		return errors.New("the archive's headers or padding are not the ones Build writes (the tar stream was changed)")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("data follows the gzip stream")
	}

	// The manifest, recomputed.
	want := manifest{Format: Format, Created: v.manifest.Created, Filters: v.manifest.Filters, Origin: cp.Origin,
		TreeSize: cp.Size, RootHash: b64(cp.Root), VerifierKey: v.rep.VerifierKey, Cosigners: v.rep.Cosigners,
		EntryCount: v.rep.Entries, Files: v.files[1:], Note: manifestNote}
	wdata, err := want.render()
	if err != nil {
		return err
	}
	if !bytes.Equal(wdata, mdata) {
		return fmt.Errorf("%s differs from the one the bundle's files give (%s)", FileManifest, firstDifference(mdata, wdata))
	}
	v.rep.Files = v.files
	return nil
}

// next opens the next archive member, which must be name, and starts its
// canonical copy.
func (v *verifier) next(name string) (*tar.Header, error) {
	h, err := v.tr.Next()
	if err == io.EOF {
		return nil, fmt.Errorf("the archive ends before %s", name)
	}
	if err != nil {
		return nil, fmt.Errorf("archive: %v", err)
	}
	if h.Name != name || h.Typeflag != tar.TypeReg {
		return nil, fmt.Errorf("the archive holds %q where %s belongs", h.Name, name)
	}
	return h, nil
}

// readSmall reads a whole small member and copies it canonically.
func (v *verifier) readSmall(name string) ([]byte, error) {
	h, err := v.next(name)
	if err != nil {
		return nil, err
	}
	if h.Size > maxSmallFile {
		return nil, fmt.Errorf("%s is over %d bytes", name, maxSmallFile)
	}
	data, err := io.ReadAll(v.tr)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	return data, nil
}

// found records a member's digest, checks it against the manifest and
// copies the member into the canonical archive.
func (v *verifier) found(name string, data []byte) error {
	if err := v.canon.WriteHeader(tarHeader(name, int64(len(data)), v.created)); err != nil {
		return err
	}
	if _, err := v.canon.Write(data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	return v.listed(FileDigest{Name: name, Size: int64(len(data)), SHA256: fmt.Sprintf("%x", sum)})
}

func (v *verifier) listed(got FileDigest) error {
	v.files = append(v.files, got)
	if got.Name == FileManifest {
		return nil
	}
	i := len(v.files) - 2 // the manifest does not list itself
	if i >= len(v.manifest.Files) || v.manifest.Files[i] != got {
		return fmt.Errorf("%s is not the file the manifest lists (size %d, SHA-256 %s)", got.Name, got.Size, got.SHA256)
	}
	return nil
}

func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

func (v *verifier) readManifest() ([]byte, error) {
	data, err := v.readSmall(FileManifest)
	if err != nil {
		return nil, err
	}
	m := &v.manifest
	if err := decodeStrict(data, m); err != nil {
		return nil, fmt.Errorf("%s: %v", FileManifest, err)
	}
	if m.Format != Format {
		return nil, fmt.Errorf("%s: format %q, this verifier reads %q", FileManifest, m.Format, Format)
	}
	if v.created, err = time.Parse(time.RFC3339, m.Created); err != nil {
		return nil, fmt.Errorf("%s: created: %v", FileManifest, err)
	}
	v.created = v.created.UTC()
	if v.rep.Filters, err = m.Filters.parse(); err != nil {
		return nil, fmt.Errorf("%s: %v", FileManifest, err)
	}
	v.rep.Format, v.rep.Created = m.Format, v.created
	switch {
	case m.VerifierKey == "" && v.vkey != "":
		return nil, fmt.Errorf("the bundle's checkpoint is certified by the registry nodes, not signed by the registry key you trust (%q): verify it without a pinned key and compare its keys.json with GET /v1/keys", v.vkey)
	case v.vkey == "":
		v.rep.VerifierKey = m.VerifierKey
	case v.vkey != m.VerifierKey:
		return nil, fmt.Errorf("the bundle names the registry key %q, not the one you trust (%q)", m.VerifierKey, v.vkey)
	default:
		v.rep.VerifierKey, v.rep.KeyPinned = v.vkey, true
	}
	return data, v.found(FileManifest, data)
}

func (v *verifier) readCheckpoint() (attestation.Checkpoint, error) {
	data, err := v.readSmall(FileCheckpoint)
	if err != nil {
		return attestation.Checkpoint{}, err
	}
	if v.rep.VerifierKey == "" {
		// Certified by the registry nodes: verified against keys.json's
		// node keys once they are read (readKeys).
		cp, err := unverifiedCheckpoint(data)
		if err != nil {
			return cp, fmt.Errorf("%s: %v", FileCheckpoint, err)
		}
		if cp.State == nil {
			return cp, fmt.Errorf("%s: names no verifier key and is not certified by the registry nodes", FileCheckpoint)
		}
		v.checkpoint = data
		v.rep.Origin, v.rep.TreeSize, v.rep.RootHash = cp.Origin, cp.Size, cp.Root
		v.rep.Cosigners = cosigners(data, cp.Origin)
		return cp, v.found(FileCheckpoint, data)
	}
	origin, _, _ := strings.Cut(v.rep.VerifierKey, "+")
	cp, _, err := attestation.OpenWitnessedCheckpoint(data, origin, v.rep.VerifierKey, nil, 0)
	if err != nil {
		return cp, fmt.Errorf("%s: %v", FileCheckpoint, err)
	}
	v.rep.Origin, v.rep.TreeSize, v.rep.RootHash = cp.Origin, cp.Size, cp.Root
	v.rep.Cosigners = cosigners(data, cp.Origin)
	return cp, v.found(FileCheckpoint, data)
}

func (v *verifier) readKeys(cp attestation.Checkpoint) (map[string]ed25519.PublicKey, error) {
	data, err := v.readSmall(FileKeys)
	if err != nil {
		return nil, err
	}
	var doc keysJSON
	if err := decodeStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", FileKeys, err)
	}
	keys := make([]*trustfedv1.RegistryKey, len(doc.Keys))
	bound := false
	for i, k := range doc.Keys {
		pub, err := base64.StdEncoding.DecodeString(k.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %v", FileKeys, k.KeyID, err)
		}
		keys[i] = &trustfedv1.RegistryKey{KeyId: k.KeyID, Algorithm: k.Algorithm, PublicKey: pub, PublicKeyPem: k.PublicKeyPEM, NodeId: k.NodeID}
		for _, f := range []struct {
			text string
			to   **timestamppb.Timestamp
		}{{k.CreateTime, &keys[i].CreateTime}, {k.ValidFrom, &keys[i].ValidFrom}, {k.ValidUntil, &keys[i].ValidUntil}, {k.RevokeTime, &keys[i].RevokeTime}} {
			if f.text == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, f.text)
			if err != nil {
				return nil, fmt.Errorf("%s: key %q: %v", FileKeys, k.KeyID, err)
			}
			*f.to = timestamppb.New(t)
		}
		bound = bound || k.CheckpointVerifierKey == v.rep.VerifierKey
		v.rep.KeyIDs = append(v.rep.KeyIDs, k.KeyID)
	}
	want, byID, err := renderKeys(keys, cp.Origin)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", FileKeys, err)
	}
	if !bytes.Equal(want, data) {
		return nil, fmt.Errorf("%s is not in the form Build writes (%s)", FileKeys, firstDifference(data, want))
	}
	if v.checkpoint != nil {
		// A certified checkpoint: a quorum of the node keys of keys.json
		// valid at its time must have signed it.
		if _, nodes, err := attestation.VerifyCertifiedCheckpoint(v.checkpoint, cp.Origin, keys); err != nil {
			return nil, fmt.Errorf("%s: %v", FileCheckpoint, err)
		} else {
			v.rep.CertifiedBy = nodes
		}
	} else if !bound {
		return nil, fmt.Errorf("%s does not hold the key that signed the checkpoint", FileKeys)
	}
	return byID, v.found(FileKeys, data)
}

// readEntries checks every line of entries.jsonl and feeds the entries to d.
func (v *verifier) readEntries(cp attestation.Checkpoint, keys map[string]ed25519.PublicKey, d *deriver) error {
	h, err := v.next(FileEntries)
	if err != nil {
		return err
	}
	if err := v.canon.WriteHeader(tarHeader(FileEntries, h.Size, v.created)); err != nil {
		return err
	}
	sink := newHashSink()
	lines := bufio.NewReaderSize(io.TeeReader(v.tr, io.MultiWriter(sink, v.canon)), 1<<16)
	var prev *uint64
	for n := 1; ; n++ {
		line, err := readLine(lines)
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %v", FileEntries, n, err)
		}
		e, err := v.entry(line, cp, keys, prev)
		if err != nil {
			return fmt.Errorf("%s line %d: %v", FileEntries, n, err)
		}
		seq := e.Sequence
		if prev == nil {
			v.rep.FirstSequence = seq
		}
		prev, v.rep.LastSequence = &seq, seq
		v.rep.Entries++
		v.rep.Types[e.Type]++
		d.add(e)
	}
	got := sink.digest()
	got.Name = FileEntries
	return v.listed(got)
}

// readLine reads one line with its newline; a last line without one is an
// error (Build ends every line).
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("over %d bytes", maxLine)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errors.New("the last line does not end with a newline")
		default:
			return nil, err
		}
	}
}

// entry checks one line: its proof, its leaf, its form, the filters, and a
// decision's signature.
func (v *verifier) entry(line []byte, cp attestation.Checkpoint, keys map[string]ed25519.PublicKey, prev *uint64) (*trustfedv1.AuditEntry, error) {
	var l entryLine
	if err := decodeStrict(line, &l); err != nil {
		return nil, err
	}
	leaf, err := base64.StdEncoding.DecodeString(l.Leaf)
	if err != nil {
		return nil, fmt.Errorf("leaf: %v", err)
	}
	hashes := make([][]byte, len(l.InclusionProof))
	for i, s := range l.InclusionProof {
		if hashes[i], err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("inclusion proof: %v", err)
		}
	}
	e, err := checkRecord(l.Sequence, leaf, hashes, cp, prev)
	if err != nil {
		return nil, err
	}
	want, err := renderEntryLine(l.Sequence, leaf, hashes, e)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(want, line) {
		return nil, fmt.Errorf("entry %d: the line is not the one its leaf gives (%s)", l.Sequence, firstDifference(line, want))
	}
	if !v.rep.Filters.matches(e) {
		return nil, fmt.Errorf("entry %d does not match the bundle's filters", l.Sequence)
	}
	if e.Type == typeDecision {
		if err := checkDecision(e, keys); err != nil {
			return nil, fmt.Errorf("entry %d: %v", l.Sequence, err)
		}
		v.rep.Decisions++
	}
	return e, nil
}

// checkDecision verifies a decision's registry signature. A
// quorum-certified decision (certified at the registry by a quorum of
// nodes' signatures over its audit batch, which the member received with
// it) carries no signature of its own node: its entry is proven, like
// every entry, by the signed checkpoint it is included in.
func checkDecision(e *trustfedv1.AuditEntry, keys map[string]ed25519.PublicKey) error {
	d := e.GetDecision()
	if d == nil {
		return errors.New("a DECISION entry without its decision")
	}
	if len(d.Signature) == 0 && d.KeyId == "" {
		st, err := decisionOf(e)
		if err != nil {
			return err
		}
		if st.KeyId != "" {
			return fmt.Errorf("the statement names key %q, but the entry carries no signature", st.KeyId)
		}
		return nil
	}
	pub, ok := keys[d.KeyId]
	if !ok {
		return fmt.Errorf("the decision is signed with key %q, which %s does not hold", d.KeyId, FileKeys)
	}
	if err := attestation.Verify(pub, attestation.PurposeDecision, d.Statement, d.Signature); err != nil {
		return fmt.Errorf("the decision's registry signature: %v", err)
	}
	st, err := decisionOf(e)
	if err != nil {
		return err
	}
	if st.KeyId != d.KeyId {
		return fmt.Errorf("the statement names key %q, the entry %q", st.KeyId, d.KeyId)
	}
	return nil
}

// readArtefact hashes an evidence file and compares it with the one the
// entries give.
func (v *verifier) readArtefact(name string, want FileDigest) error {
	h, err := v.next(name)
	if err != nil {
		return err
	}
	if err := v.canon.WriteHeader(tarHeader(name, h.Size, v.created)); err != nil {
		return err
	}
	sink := newHashSink()
	if _, err := io.Copy(io.MultiWriter(sink, v.canon), v.tr); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	got := sink.digest()
	got.Name, want.Name = name, name
	if got != want {
		return fmt.Errorf("%s is not the file the entries give (size %d, want %d; SHA-256 %s, want %s)", name, got.Size, want.Size, got.SHA256, want.SHA256)
	}
	return v.listed(got)
}

// firstDifference describes where two renderings first differ.
func firstDifference(got, want []byte) string {
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	line := bytes.Count(got[:i], []byte("\n")) + 1
	return fmt.Sprintf("first difference at byte %d, line %d", i, line)
}
