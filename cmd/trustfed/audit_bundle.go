package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/client/evidence"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
)

func init() {
	auditSubcommands = append(auditSubcommands, newAuditExportCmd, newAuditVerifyCmd, newAuditReplayCmd)
}

// progressBar redraws one line on stderr while a long command runs:
// "[#####-----] 1200/5000 entries  3.2s".
type progressBar struct {
	w     io.Writer
	unit  string
	start time.Time
	last  time.Time
	drawn bool
}

func newProgressBar(w io.Writer, unit string) *progressBar {
	return &progressBar{w: w, unit: unit, start: time.Now()}
}

func (p *progressBar) draw(done, total int) {
	now := time.Now()
	if p.drawn && done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	const width = 30
	filled := width
	if total > 0 {
		filled = min(width, max(0, done*width/total))
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d %s  %s ", strings.Repeat("#", filled), strings.Repeat("-", width-filled), done, total, p.unit,
		now.Sub(p.start).Round(100*time.Millisecond))
	p.last, p.drawn = now, true
}

// end finishes the line.
func (p *progressBar) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

func validateRegistryKey(vkey string) error {
	if vkey == "" {
		return nil
	}
	if _, err := note.NewVerifier(vkey); err != nil {
		return usageErrorf("--registry-key %q is not a note verifier key (ORIGIN+HASH+KEY): %v", vkey, err)
	}
	return nil
}

func newAuditExportCmd(a *app) *cobra.Command {
	var compliance, since, until, org, file, registryKey string
	cmd := &cobra.Command{
		Use:   "export --compliance hipaa|soc2|gdpr --since RFC3339 --until RFC3339 [--org ORG] [-f FILE] [--registry-key VKEY]",
		Short: "Export an AG-783 evidence bundle (E01–E07) of a compliance view and period",
		Long: `Export the audit entries of a compliance view and period into one evidence
bundle (.tar.gz): the signed tree head, the registry keys, every entry with
its inclusion proof, and the AG-783 artefacts E01–E07 derived from them
(see "trustfed audit verify"). The bundle is verified before it is kept:
with --registry-key against the registry key you trust, otherwise against
the key the registry publishes. An existing FILE is never overwritten.`,
		Example: "  trustfed audit export --compliance hipaa --since 2026-01-01T00:00:00Z --until 2026-04-01T00:00:00Z",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := exportFilters(compliance, since, until, org)
			if err != nil {
				return err
			}
			if err := validateRegistryKey(registryKey); err != nil {
				return err
			}
			if f.Until.After(time.Now()) {
				fmt.Fprintf(a.stderr, "warning: --until %s is in the future: the bundle holds the entries up to the newest signed checkpoint\n", until)
			}
			if file == "" {
				file = fmt.Sprintf("evidence-%s-%s.tar.gz", strings.ToLower(compliance), time.Now().UTC().Format("2006-01-02"))
			}
			if _, err := os.Lstat(file); err == nil {
				return fmt.Errorf("%s exists: remove it or choose another -f", file)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				rep, sum, err := exportBundle(ctx, c, f, file, registryKey, a.stderr)
				if err != nil {
					return err
				}
				if a.output == outputJSON {
					return writePlainJSON(a.stdout, map[string]any{"file": file, "sha256": sum, "report": rep})
				}
				t := newTable(a.stdout)
				t.row("Bundle:", file)
				t.row("SHA-256:", sum)
				writeBundleReport(t, rep)
				return t.flush()
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&compliance, "compliance", "", "compliance view: hipaa, soc2 or gdpr (required)")
	fl.StringVar(&since, "since", "", "entries at or after this time, RFC 3339 (required)")
	fl.StringVar(&until, "until", "", "entries before this time, RFC 3339 (required)")
	fl.StringVar(&org, "org", "", "only entries naming this organisation")
	fl.StringVarP(&file, "file", "f", "", "bundle to write (default evidence-<compliance>-<date>.tar.gz)")
	fl.StringVar(&registryKey, "registry-key", "", "verify the bundle against this registry checkpoint verifier key (ORIGIN+HASH+KEY)")
	for _, name := range []string{"compliance", "since", "until"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func exportFilters(compliance, since, until, org string) (evidence.Filters, error) {
	var f evidence.Filters
	mode, ok := map[string]trustfedv1.ComplianceMode{
		"hipaa": trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA,
		"soc2":  trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2,
		"gdpr":  trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR,
	}[strings.ToLower(compliance)]
	if !ok {
		return f, usageErrorf("--compliance %q must be hipaa, soc2 or gdpr", compliance)
	}
	f.Compliance = mode
	for _, tf := range []struct {
		flag, value string
		dst         *time.Time
	}{{"--since", since, &f.Since}, {"--until", until, &f.Until}} {
		t, err := time.Parse(time.RFC3339, tf.value)
		if err != nil {
			return f, usageErrorf("%s %q is not an RFC 3339 time such as 2026-01-01T00:00:00Z", tf.flag, tf.value)
		}
		*tf.dst = t
	}
	if !f.Since.Before(f.Until) {
		return f, usageErrorf("--until %s must be after --since %s", until, since)
	}
	if org != "" {
		if err := validateOrgID("--org", org); err != nil {
			return f, err
		}
		f.OrganizationID = org
	}
	return f, nil
}

// exportBundle writes the bundle next to file, verifies it and only then
// moves it into place; it returns the report and the archive's SHA-256.
func exportBundle(ctx context.Context, c *client.Client, f evidence.Filters, file, vkey string, stderr io.Writer) (evidence.Report, string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".*.tmp")
	if err != nil {
		return evidence.Report{}, "", err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	defer func() { _ = tmp.Close() }()
	h := sha256.New()
	w := bufio.NewWriterSize(io.MultiWriter(tmp, h), 1<<20)
	bar := newProgressBar(stderr, "log entries scanned")
	err = evidence.Export(ctx, c, f, w, bar.draw)
	bar.end()
	if err != nil {
		return evidence.Report{}, "", fmt.Errorf("export: %w", err)
	}
	if err := w.Flush(); err != nil {
		return evidence.Report{}, "", err
	}
	if err := tmp.Sync(); err != nil {
		return evidence.Report{}, "", err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return evidence.Report{}, "", err
	}
	rep, err := evidence.Verify(bufio.NewReaderSize(tmp, 1<<20), vkey)
	if err != nil {
		return rep, "", fmt.Errorf("the exported bundle does not verify, not kept: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return rep, "", err
	}
	if _, err := os.Lstat(file); err == nil {
		return rep, "", fmt.Errorf("%s appeared while exporting: not overwritten", file)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return rep, "", err
	}
	return rep, hex.EncodeToString(h.Sum(nil)), nil
}

// writeBundleReport prints what verifying a bundle checked.
func writeBundleReport(t *table, r evidence.Report) {
	t.row("Verified:", "checkpoint signature, every inclusion proof, every decision signature, every file recomputed from the entries")
	t.row("Format:", r.Format+", created "+r.Created.Format(time.RFC3339))
	fl := r.Filters
	filters := []string{}
	if fl.Compliance != trustfedv1.ComplianceMode_COMPLIANCE_MODE_UNSPECIFIED {
		filters = append(filters, "compliance "+formatEnum(fl.Compliance.String(), "COMPLIANCE_MODE_"))
	}
	if !fl.Since.IsZero() {
		filters = append(filters, "since "+fl.Since.UTC().Format(time.RFC3339Nano))
	}
	if !fl.Until.IsZero() {
		filters = append(filters, "until "+fl.Until.UTC().Format(time.RFC3339Nano))
	}
	if fl.OrganizationID != "" {
		filters = append(filters, "organisation "+fl.OrganizationID)
	}
	t.row("Filters:", orDash(strings.Join(filters, ", ")))
	t.row("Log:", fmt.Sprintf("%s, %d entries, root %s", r.Origin, r.TreeSize, base64.StdEncoding.EncodeToString(r.RootHash)))
	key := r.VerifierKey + " (pinned)"
	if !r.KeyPinned {
		key = r.VerifierKey + " (TAKEN FROM THE BUNDLE: this shows the bundle is intact, not who signed it; pin the key with --registry-key)"
	}
	if r.VerifierKey == "" {
		key = "none: certified by the registry nodes " + strings.Join(r.CertifiedBy, ", ") + " (their keys TAKEN FROM THE BUNDLE: compare keys.json with GET /v1/keys of the registry you trust)"
	}
	t.row("Registry key:", key)
	if len(r.Cosigners) > 0 {
		t.row("Cosigned by:", strings.Join(r.Cosigners, ", ")+" (not verified: the witnesses' keys are not in the bundle)")
	}
	span := ""
	if r.Entries > 0 {
		span = fmt.Sprintf(" (sequences %d..%d)", r.FirstSequence, r.LastSequence)
	}
	t.row("Entries:", fmt.Sprintf("%d%s, %d signed decisions", r.Entries, span, r.Decisions))
	types := make([]string, 0, len(r.Types))
	for typ := range r.Types {
		types = append(types, typ)
	}
	slices.Sort(types)
	for i, typ := range types {
		types[i] = fmt.Sprintf("%s %d", typ, r.Types[typ])
	}
	t.row("Types:", orDash(strings.Join(types, ", ")))
	for _, f := range r.Files {
		t.row("File:", fmt.Sprintf("%s  %d bytes  sha256 %s", f.Name, f.Size, f.SHA256))
	}
}

func newAuditVerifyCmd(a *app) *cobra.Command {
	var registryKey, sthFile string
	cmd := &cobra.Command{
		Use:   "verify (BUNDLE | --sth OLD.json) [--registry-key VKEY]",
		Short: "Verify an evidence bundle offline, or that the log only grew since a saved tree head",
		Long: `verify BUNDLE checks an evidence bundle offline, with public keys only: the
registry's signature of its checkpoint (with --registry-key, the key you
trust; without it the bundle's own key, which the report says), every
entry's inclusion proof, every decision's registry signature, and every
file recomputed from the entries byte for byte. It exits non-zero if
anything differs.

verify --sth OLD.json checks the registry's log was only appended to since
a tree head saved earlier ("trustfed audit sth --save"): it fetches the
newest tree head, verifies both with the registry key (--registry-key, or
else the key saved in OLD.json) and verifies a consistency proof between
them.`,
		Example: "  trustfed audit verify evidence-hipaa-2026-04-01.tar.gz --registry-key \"$VKEY\"\n  trustfed audit verify --sth sth-2026-01-01.json",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := validateRegistryKey(registryKey); err != nil {
				return err
			}
			switch {
			case (len(args) == 1) == (sthFile != ""):
				return usageErrorf("give either a BUNDLE or --sth OLD.json")
			case sthFile != "":
				return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
					return verifyGrowth(ctx, a, c, sthFile, registryKey)
				})
			}
			rep, err := verifyBundleFile(args[0], registryKey)
			if err != nil {
				return err
			}
			if a.output == outputJSON {
				return writePlainJSON(a.stdout, rep)
			}
			t := newTable(a.stdout)
			t.row("Bundle:", args[0])
			writeBundleReport(t, rep)
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&registryKey, "registry-key", "", "the registry checkpoint verifier key you trust (ORIGIN+HASH+KEY)")
	cmd.Flags().StringVar(&sthFile, "sth", "", "a tree head saved earlier (protojson GetSignedTreeHeadResponse): check the log only grew since")
	return cmd
}

func verifyBundleFile(path, vkey string) (evidence.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return evidence.Report{}, err
	}
	defer func() { _ = f.Close() }()
	return evidence.Verify(bufio.NewReaderSize(f, 1<<20), vkey)
}

// verifyGrowth checks the current tree head extends the one in file.
func verifyGrowth(ctx context.Context, a *app, c *client.Client, file, vkey string) error {
	data, err := readBounded(file, 1<<20, "tree head")
	if err != nil {
		return err
	}
	var old trustfedv1.GetSignedTreeHeadResponse
	if err := protojson.Unmarshal(data, &old); err != nil {
		return fmt.Errorf("%s is not a saved tree head (GetSignedTreeHeadResponse, protojson): %w", file, err)
	}
	source := "pinned"
	oldKey := vkey
	if vkey == "" {
		oldKey, source = old.GetVerifierKey(), "saved in "+file
		if oldKey == "" {
			source = "certified by the registry nodes (keys from GetKeys)"
		}
	}
	var oldCP attestation.Checkpoint
	if oldKey != "" {
		oldCP, err = client.VerifyTreeHead(&old, oldKey, nil, 0)
	} else {
		oldCP, err = verifyHead(ctx, c, &old, "")
	}
	if err != nil {
		return fmt.Errorf("the saved tree head: %w", err)
	}
	cur, err := c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{})
	if err != nil {
		return err
	}
	curKey := vkey
	if curKey == "" && cur.GetVerifierKey() != "" {
		curKey = oldKey // a registry-key cluster: the same key signs both
	}
	curCP, err := verifyHead(ctx, c, cur, curKey)
	if err != nil {
		return fmt.Errorf("the current tree head: %w", err)
	}
	vkey = cmp.Or(oldKey, "the registry nodes' certification")
	var hashes [][]byte
	if oldCP.Size > 0 && oldCP.Size < curCP.Size {
		proof, err := c.Audit().GetConsistencyProof(ctx, &trustfedv1.GetConsistencyProofRequest{First: oldCP.Size, Second: curCP.Size})
		if err != nil {
			return err
		}
		if proof.GetFirst() != oldCP.Size || proof.GetSecond() != curCP.Size {
			return fmt.Errorf("%w: asked to prove %d..%d, got %d..%d", client.ErrAuditProof, oldCP.Size, curCP.Size, proof.GetFirst(), proof.GetSecond())
		}
		hashes = proof.GetHashes()
	}
	if oldCP.Size == curCP.Size && !oldCP.Equal(curCP) {
		return fmt.Errorf("%w: two different trees of %d entries", client.ErrAuditProof, curCP.Size)
	}
	if err := client.VerifyConsistency(oldCP, curCP, hashes); err != nil {
		return err
	}
	result := map[string]any{"origin": curCP.Origin, "oldSize": oldCP.Size, "oldRoot": oldCP.Root, "size": curCP.Size, "root": curCP.Root,
		"verifierKey": vkey, "keySource": source, "consistent": true}
	if a.output == outputJSON {
		return writePlainJSON(a.stdout, result)
	}
	t := newTable(a.stdout)
	t.row("Log:", curCP.Origin)
	t.row("Saved:", fmt.Sprintf("%d entries, root %s", oldCP.Size, base64.StdEncoding.EncodeToString(oldCP.Root)))
	t.row("Now:", fmt.Sprintf("%d entries, root %s", curCP.Size, base64.StdEncoding.EncodeToString(curCP.Root)))
	t.row("Registry key:", vkey+" ("+source+")")
	t.row("Verified:", "both signatures, and the log was only appended to in between")
	return t.flush()
}

func newAuditReplayCmd(a *app) *cobra.Command {
	var registryKey string
	cmd := &cobra.Command{
		Use:   "replay [--registry-key VKEY]",
		Short: "Rebuild the registry state from the whole audit log and re-derive every decision",
		Long: `Read every entry of the audit log up to the newest signed tree head (its
signature checked with --registry-key, or else the key the registry
publishes; the entries checked against its root), rebuild the registry
state from the logged commands and check that every command was accepted
or refused as logged and that every decision is the one the state gave at
the index and time it was made. It needs the whole log (an admin or
regulator token) and exits non-zero on any mismatch.`,
		Example: "  trustfed audit replay --registry-key \"$VKEY\"",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateRegistryKey(registryKey); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				return replayLog(ctx, a, c, registryKey)
			})
		},
	}
	cmd.Flags().StringVar(&registryKey, "registry-key", "", "the registry checkpoint verifier key you trust (ORIGIN+HASH+KEY); default: the one the registry publishes")
	return cmd
}

// verifiedTreeHead fetches the newest tree head and verifies it
// (verifyHead).
func verifiedTreeHead(ctx context.Context, c *client.Client, vkey string) (*trustfedv1.GetSignedTreeHeadResponse, attestation.Checkpoint, error) {
	sth, err := c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{})
	if err != nil {
		return nil, attestation.Checkpoint{}, err
	}
	cp, err := verifyHead(ctx, c, sth, vkey)
	return sth, cp, err
}

// verifyHead verifies a tree head with the pinned registry key vkey, or,
// when vkey is "", against the keys the registry publishes: a checkpoint
// certified by the registry nodes must carry a quorum of the endorsed node
// keys' signatures; one signed by the registry key must name a published key.
func verifyHead(ctx context.Context, c *client.Client, sth *trustfedv1.GetSignedTreeHeadResponse, vkey string) (attestation.Checkpoint, error) {
	if vkey == "" {
		keys, err := c.Keys(ctx)
		if err != nil {
			return attestation.Checkpoint{}, err
		}
		if sth.GetVerifierKey() == "" {
			return client.VerifyTreeHeadWithKeys(sth, keys, nil, 0)
		}
		for _, k := range keys {
			if v, err := attestation.CheckpointVerifierKey(sth.GetOrigin(), k.GetPublicKey()); err == nil && v == sth.GetVerifierKey() && k.GetNodeId() == "" {
				vkey = v
			}
		}
		if vkey == "" {
			return attestation.Checkpoint{}, fmt.Errorf("%w: the tree head's key is not one the registry publishes", client.ErrAuditProof)
		}
	}
	return client.VerifyTreeHead(sth, vkey, nil, 0)
}

func replayLog(ctx context.Context, a *app, c *client.Client, vkey string) error {
	_, cp, err := verifiedTreeHead(ctx, c, vkey)
	if err != nil {
		return err
	}
	tree := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewEmptyRange(0)
	req := &trustfedv1.ListAuditEntriesRequest{PageSize: 1000, TreeSize: cp.Size}
	var page []*trustfedv1.AuditRecord
	done := cp.Size == 0
	next := func() (*trustfedv1.AuditRecord, bool, error) {
		for len(page) == 0 {
			if done {
				return nil, false, nil
			}
			resp, err := c.Audit().ListAuditEntries(ctx, req)
			if err != nil {
				return nil, false, err
			}
			if resp.GetTreeSize() != cp.Size {
				return nil, false, fmt.Errorf("%w: entries of a tree of %d entries, asked for %d", client.ErrAuditProof, resp.GetTreeSize(), cp.Size)
			}
			page = resp.GetRecords()
			if resp.GetNextPageToken() == "" {
				done = true
			} else if resp.GetNextPageToken() == req.PageToken {
				return nil, false, fmt.Errorf("the server repeated page token %q", req.PageToken)
			}
			req.PageToken = resp.GetNextPageToken()
		}
		rec := page[0]
		page = page[1:]
		if err := tree.Append(rfc6962.DefaultHasher.HashLeaf(rec.GetLeaf()), nil); err != nil {
			return nil, false, err
		}
		return rec, true, nil
	}
	bar := newProgressBar(a.stderr, "entries replayed")
	rep, err := decision.Replay(next, func(n uint64) { bar.draw(int(n), int(cp.Size)) })
	bar.end()
	if errors.Is(err, decision.ErrReplay) {
		return fmt.Errorf("%w (a member sees only its own entries: replay with an admin or regulator token)", err)
	}
	if err != nil {
		return err
	}
	if rep.Entries != cp.Size {
		return fmt.Errorf("%w: read %d entries of the signed tree of %d", client.ErrAuditProof, rep.Entries, cp.Size)
	}
	root := rfc6962.DefaultHasher.EmptyRoot()
	if cp.Size > 0 {
		if root, err = tree.GetRootHash(nil); err != nil {
			return err
		}
	}
	if !slices.Equal(root, cp.Root) {
		return fmt.Errorf("%w: the entries read do not hash to the signed root of %d entries", client.ErrAuditProof, cp.Size)
	}
	if a.output == outputJSON {
		if err := writePlainJSON(a.stdout, rep); err != nil {
			return err
		}
	} else if err := writeReplayReport(a.stdout, rep, cp); err != nil {
		return err
	}
	if n := len(rep.Mismatches); n > 0 {
		return fmt.Errorf("replay found %d entries the rebuilt state disagrees with", n)
	}
	return nil
}

func writeReplayReport(w io.Writer, r decision.ReplayReport, cp attestation.Checkpoint) error {
	t := newTable(w)
	t.row("Log:", fmt.Sprintf("%s, %d entries, root %s (signature and root verified)", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root)))
	t.row("Commands applied:", fmt.Sprintf("%d (%d redacted, skipped: their secrets are not logged)", r.Commands, r.Redacted))
	t.row("Decisions re-derived:", fmt.Sprint(r.Decisions))
	t.row("Level changes checked:", fmt.Sprint(r.LevelChanges))
	t.row("Cascades checked:", fmt.Sprint(r.Cascades))
	t.row("Mismatches:", fmt.Sprint(len(r.Mismatches)))
	if err := t.flush(); err != nil {
		return err
	}
	for _, m := range r.Mismatches {
		if _, err := fmt.Fprintln(w, "  "+clean(m.String())); err != nil {
			return fmt.Errorf("write output: %w", err)
		}
	}
	return nil
}
