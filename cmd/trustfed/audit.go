package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// auditSubcommands are the constructors of the "audit" group's commands.
// Each file of the group appends its own in an init function: this file
// adds sth, entries, proof and witness (below), audit_bundle.go adds
// export, verify and replay. So neither file names the other's functions,
// and each compiles without the other.
var auditSubcommands []func(*app) *cobra.Command

func init() {
	auditSubcommands = append(auditSubcommands, newAuditSTHCmd, newAuditEntriesCmd, newAuditProofCmd, newAuditWitnessCmd)
}

func newAuditCmd(a *app) *cobra.Command {
	cmd := newGroupCmd("audit", "Read and verify the tamper-evident audit log, and witness it")
	for _, sub := range auditSubcommands {
		cmd.AddCommand(sub(a))
	}
	return cmd
}

// headTrust is how a command checks the signed tree head: the registry's
// verifier key (pinned with --registry-key, or else the newest key
// GetKeys publishes) and the witnesses whose cosignatures it requires.
type headTrust struct {
	registryKey string
	specs       []string
	need        int
	witnesses   []attestation.Witness
}

func (h *headTrust) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&h.registryKey, "registry-key", "", "pin the registry's checkpoint verifier key (ORIGIN+HASH+KEY); default: the newest key GetKeys publishes, which trusts the node you ask")
	f.StringArrayVar(&h.specs, "witness", nil, "a witness you trust, ORG=PUBKEYFILE (the organisation's ed25519 public key, PEM); repeatable")
	f.IntVar(&h.need, "need", 0, "cosignatures by the --witness organisations required (default: all of them)")
}

// parse checks the flags and reads the witnesses' keys.
func (h *headTrust) parse(cmd *cobra.Command) error {
	if h.registryKey != "" {
		if _, err := note.NewVerifier(h.registryKey); err != nil {
			return usageErrorf("--registry-key %q is not a note verifier key: %v", h.registryKey, err)
		}
	}
	h.witnesses = nil
	for _, spec := range h.specs {
		org, file, ok := strings.Cut(spec, "=")
		if !ok || file == "" {
			return usageErrorf("--witness %q is not ORG=PUBKEYFILE", spec)
		}
		if err := validateOrgID("--witness", org); err != nil {
			return err
		}
		for _, w := range h.witnesses {
			if w.Name == org {
				return usageErrorf("--witness %s is given twice", org)
			}
		}
		data, err := readBounded(file, 64<<10, "witness key")
		if err != nil {
			return err
		}
		pub, err := attestation.ParsePublicKeyPEM(data)
		if err != nil {
			return fmt.Errorf("--witness %s: %s: %w", org, file, err)
		}
		h.witnesses = append(h.witnesses, attestation.Witness{Name: org, Key: pub})
	}
	if !cmd.Flags().Changed("need") {
		h.need = len(h.witnesses)
	}
	if h.need < 0 || h.need > len(h.witnesses) {
		return usageErrorf("--need %d must be 0..%d (the number of --witness)", h.need, len(h.witnesses))
	}
	return nil
}

// trustedHead is a signed tree head that verified.
type trustedHead struct {
	sth       *trustfedv1.GetSignedTreeHeadResponse
	cp        attestation.Checkpoint
	vkey      string
	pinned    bool
	cosigners []string // the trusted witnesses whose cosignatures verified
	// certifiers are the registry nodes that certified the checkpoint
	// (empty for one signed by the registry key).
	certifiers []string
}

// verify fetches the newest tree head with enough cosignatures and checks it.
func (h *headTrust) verify(ctx context.Context, c *client.Client) (trustedHead, error) {
	sth, err := c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{MinCosignatures: uint32(h.need)})
	if err != nil {
		return trustedHead{}, err
	}
	v := trustedHead{sth: sth, vkey: h.registryKey, pinned: h.registryKey != ""}
	if !v.pinned {
		keys, err := c.Keys(ctx)
		if err != nil {
			return trustedHead{}, err
		}
		if attestation.NodeKeysPublished(slices.Collect(maps.Values(keys))) {
			// Certified by a quorum of the registry nodes (their keys from
			// GetKeys); no single key, the registry's included, makes one.
			if v.cp, err = client.VerifyTreeHeadWithKeys(sth, keys, h.witnesses, h.need); err != nil {
				return trustedHead{}, err
			}
			if _, v.certifiers, v.cosigners, err = attestation.OpenRegistryCheckpoint(sth.GetCheckpoint(), v.cp.Origin, slices.Collect(maps.Values(keys)), h.witnesses, 0); err != nil {
				return trustedHead{}, fmt.Errorf("%w: %v", client.ErrAuditProof, err)
			}
			return v, nil
		}
		if v.vkey, err = c.RegistryVerifierKey(ctx, sth.GetOrigin()); err != nil {
			return trustedHead{}, err
		}
	}
	if v.cp, err = client.VerifyTreeHead(sth, v.vkey, h.witnesses, h.need); err != nil {
		return trustedHead{}, err
	}
	if _, v.cosigners, err = attestation.OpenWitnessedCheckpoint(sth.GetCheckpoint(), v.cp.Origin, v.vkey, h.witnesses, 0); err != nil {
		return trustedHead{}, fmt.Errorf("%w: %v", client.ErrAuditProof, err)
	}
	return v, nil
}

func newAuditSTHCmd(a *app) *cobra.Command {
	var trust headTrust
	var save string
	cmd := &cobra.Command{
		Use:   "sth [--registry-key VKEY] [--witness ORG=PUBKEYFILE ...] [--need N] [--save FILE]",
		Short: "Show and verify the newest signed tree head of the audit log",
		Long: `Fetch the newest signed tree head (a C2SP checkpoint of the audit log) and
verify the registry's signature and the cosignatures of the witnesses you
trust. Without --registry-key the key comes from the node itself (GetKeys):
pin it for a check that does not trust the node. --save writes the tree
head (protojson) for a later "trustfed audit verify --sth FILE".`,
		Example: "  trustfed audit sth --witness acme-bank=acme-bank.key.pub --save sth.json",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := trust.parse(cmd); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				head, err := trust.verify(ctx, c)
				if err != nil {
					return err
				}
				if save != "" {
					data, err := jsonOptions().Marshal(head.sth)
					if err != nil {
						return fmt.Errorf("encode tree head: %w", err)
					}
					if err := attestation.WriteFile(save, append(data, '\n'), 0o644, true); err != nil {
						return err
					}
				}
				return a.print(head.sth, func(w io.Writer) error { return writeTreeHead(w, head, len(trust.witnesses), trust.need) })
			})
		},
	}
	trust.addFlags(cmd)
	cmd.Flags().StringVar(&save, "save", "", "write the verified tree head to FILE (protojson)")
	return cmd
}

// writeTreeHead prints a verified tree head as key-value rows.
func writeTreeHead(w io.Writer, h trustedHead, trusted, need int) error {
	t := newTable(w)
	t.row("Origin:", h.sth.GetOrigin())
	t.row("Tree size:", fmt.Sprint(h.sth.GetTreeSize()))
	t.row("Root hash:", base64.StdEncoding.EncodeToString(h.sth.GetRootHash()))
	t.row("Time:", formatTime(h.sth.GetTime()))
	t.row("Log size:", fmt.Sprint(h.sth.GetLogSize()))
	t.row("Witnesses:", orDash(strings.Join(h.sth.GetWitnesses(), ", ")))
	signed := "registry signature"
	if len(h.certifiers) > 0 {
		signed = fmt.Sprintf("certified by a quorum of the registry nodes (%s; keys from GetKeys)", strings.Join(h.certifiers, ", "))
	} else {
		source := "from GetKeys"
		if h.pinned {
			source = "pinned"
		}
		t.row("Verifier key:", h.vkey+" ("+source+")")
		if served := h.sth.GetVerifierKey(); served != "" && served != h.vkey {
			t.row("Served key:", served+" (differs)")
		}
	}
	t.row("Verified:", fmt.Sprintf("%s; cosigned by %d of %d trusted witnesses (need %d)%s",
		signed, len(h.cosigners), trusted, need, auditNamesSuffix(h.cosigners)))
	writeMetaRows(t, h.sth.GetMeta())
	return t.flush()
}

func auditNamesSuffix(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

// auditEntriesOptions are the flags of "audit entries".
type auditEntriesOptions struct {
	org, typ, since, until, compliance string
	limit                              int
	proofs                             bool
	trust                              headTrust
}

var auditTypePattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

var auditComplianceModes = map[string]trustfedv1.ComplianceMode{
	"hipaa": trustfedv1.ComplianceMode_COMPLIANCE_MODE_HIPAA,
	"soc2":  trustfedv1.ComplianceMode_COMPLIANCE_MODE_SOC2,
	"gdpr":  trustfedv1.ComplianceMode_COMPLIANCE_MODE_GDPR,
}

// request validates the flags into the first page's request.
func (o *auditEntriesOptions) request() (*trustfedv1.ListAuditEntriesRequest, error) {
	req := &trustfedv1.ListAuditEntriesRequest{OrganizationId: o.org, WithProofs: o.proofs}
	if o.org != "" {
		if err := validateOrgID("--org", o.org); err != nil {
			return nil, err
		}
	}
	if o.typ != "" {
		req.Type = strings.ToUpper(o.typ)
		if !auditTypePattern.MatchString(req.Type) {
			return nil, usageErrorf("--type %q is not an event type such as DECISION or APPROVE_ADMIN_CHANGE", o.typ)
		}
	}
	if o.compliance != "" {
		m, ok := auditComplianceModes[strings.ToLower(o.compliance)]
		if !ok {
			return nil, usageErrorf("--compliance %q must be hipaa, soc2 or gdpr", o.compliance)
		}
		req.Compliance = m
	}
	for _, tf := range []struct {
		flag, value string
		dst         **timestamppb.Timestamp
	}{{"--since", o.since, &req.Since}, {"--until", o.until, &req.Until}} {
		if tf.value == "" {
			continue
		}
		ts, err := time.Parse(time.RFC3339, tf.value)
		if err != nil {
			return nil, usageErrorf("%s %q is not an RFC 3339 time such as 2026-01-01T00:00:00Z", tf.flag, tf.value)
		}
		*tf.dst = timestamppb.New(ts)
	}
	if req.Since != nil && req.Until != nil && !req.Since.AsTime().Before(req.Until.AsTime()) {
		return nil, usageErrorf("--until %s must be after --since %s", o.until, o.since)
	}
	if o.limit < 1 {
		return nil, usageErrorf("--limit %d must be at least 1", o.limit)
	}
	return req, nil
}

// maxAuditListPage is the largest page ListAuditEntries serves.
const maxAuditListPage = 1000

func newAuditEntriesCmd(a *app) *cobra.Command {
	var o auditEntriesOptions
	cmd := &cobra.Command{
		Use:   "entries [--org O] [--type T] [--since RFC3339] [--until RFC3339] [--compliance hipaa|soc2|gdpr] [--limit N] [--proofs]",
		Short: "List audit log entries, oldest first, optionally proving each is in the signed log",
		Long: `List audit log entries in log order, filtered by organisation, event type,
time and compliance view; members see only the entries that name them.
With --proofs every entry comes with an inclusion proof, checked against the
newest signed tree head (verified as "trustfed audit sth" does), and the
entries shown are decoded from the proven leaf bytes.`,
		Example: "  trustfed audit entries --org acme-bank --type DECISION --since 2026-01-01T00:00:00Z --proofs",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request()
			if err != nil {
				return err
			}
			if !o.proofs {
				for _, name := range []string{"registry-key", "witness", "need"} {
					if cmd.Flags().Changed(name) {
						return usageErrorf("--%s applies only with --proofs", name)
					}
				}
			} else if err := o.trust.parse(cmd); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				var head trustedHead
				if o.proofs {
					if head, err = o.trust.verify(ctx, c); err != nil {
						return err
					}
					req.TreeSize = head.cp.Size
				}
				all, err := pageAuditEntries(ctx, c, req, o.limit, head)
				if err != nil {
					return err
				}
				verified := ""
				if o.proofs {
					verified = fmt.Sprintf("Inclusion proofs: all %d entries verified in the signed tree of %d entries (root %s).",
						len(all.Records), head.cp.Size, base64.StdEncoding.EncodeToString(head.cp.Root))
					if a.output == outputJSON {
						fmt.Fprintln(a.stderr, verified)
					}
				}
				return a.print(all, func(w io.Writer) error {
					if err := writeAuditEntries(w, all.GetRecords()); err != nil {
						return err
					}
					if all.GetNextPageToken() != "" {
						fmt.Fprintf(w, "(more entries: raise --limit, now %d)\n", o.limit)
					}
					if verified != "" {
						fmt.Fprintln(w, verified)
					}
					return nil
				})
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.org, "org", "", "only entries naming this organisation")
	f.StringVar(&o.typ, "type", "", "only entries of this event type, e.g. DECISION, LEVEL_CHANGE, CASCADE, APPROVE_ADMIN_CHANGE")
	f.StringVar(&o.since, "since", "", "only entries at or after this time (RFC 3339)")
	f.StringVar(&o.until, "until", "", "only entries before this time (RFC 3339)")
	f.StringVar(&o.compliance, "compliance", "", "only entries of this compliance view: hipaa, soc2 or gdpr")
	f.IntVar(&o.limit, "limit", 100, "at most this many entries")
	f.BoolVar(&o.proofs, "proofs", false, "verify every entry's inclusion proof against the verified signed tree head")
	o.trust.addFlags(cmd)
	return cmd
}

// pageAuditEntries follows next_page_token until limit records. With
// req.WithProofs each record's proof is checked against head, and its entry
// replaced by the one decoded from the proven leaf.
func pageAuditEntries(ctx context.Context, c *client.Client, req *trustfedv1.ListAuditEntriesRequest, limit int, head trustedHead) (*trustfedv1.ListAuditEntriesResponse, error) {
	all := &trustfedv1.ListAuditEntriesResponse{}
	seen := map[string]bool{}
	for {
		req.PageSize = int32(min(limit-len(all.Records), maxAuditListPage))
		resp, err := c.Audit().ListAuditEntries(ctx, req)
		if err != nil {
			return nil, err
		}
		all.TreeSize, all.Meta = resp.GetTreeSize(), resp.GetMeta()
		if req.WithProofs && resp.GetTreeSize() != head.cp.Size {
			return nil, fmt.Errorf("%w: entries proven in a tree of %d entries, asked for %d", client.ErrAuditProof, resp.GetTreeSize(), head.cp.Size)
		}
		for _, rec := range resp.GetRecords() {
			if req.WithProofs {
				if err := proveAuditRecord(rec, head.cp); err != nil {
					return nil, err
				}
			}
			if len(all.Records) < limit {
				all.Records = append(all.Records, rec)
			}
		}
		next := resp.GetNextPageToken()
		switch {
		case next == "":
			return all, nil
		case len(all.Records) >= limit:
			all.NextPageToken = next // there may be more
			return all, nil
		case seen[next]:
			return nil, fmt.Errorf("server repeated page token %q", next)
		}
		seen[next] = true
		req.PageToken = next
	}
}

// proveAuditRecord checks rec's inclusion proof in cp and sets its entry to the
// one its leaf bytes hold.
func proveAuditRecord(rec *trustfedv1.AuditRecord, cp attestation.Checkpoint) error {
	if err := client.VerifyInclusion(rec.GetLeaf(), rec.GetSequence(), rec.GetInclusionProof(), cp); err != nil {
		return err
	}
	e, err := decodeProvenLeaf(rec.GetLeaf(), rec.GetSequence())
	if err != nil {
		return err
	}
	rec.Entry = e
	return nil
}

func decodeProvenLeaf(leaf []byte, seq uint64) (*trustfedv1.AuditEntry, error) {
	var e trustfedv1.AuditEntry
	if err := proto.Unmarshal(leaf, &e); err != nil {
		return nil, fmt.Errorf("audit entry %d does not decode: %w", seq, err)
	}
	if e.GetSequence() != seq {
		return nil, fmt.Errorf("%w: the leaf at %d says it is entry %d", client.ErrAuditProof, seq, e.GetSequence())
	}
	return &e, nil
}

// writeAuditEntries prints audit records as a table.
func writeAuditEntries(w io.Writer, recs []*trustfedv1.AuditRecord) error {
	t := newTable(w)
	t.row("SEQ", "TIME", "TYPE", "ORGANIZATIONS", "PRINCIPAL", "SUMMARY")
	for _, r := range recs {
		e := r.GetEntry()
		t.row(fmt.Sprint(r.GetSequence()), formatTime(e.GetTime()), orDash(e.GetType()),
			orDash(strings.Join(e.GetOrganizationIds(), ",")), orDash(e.GetPrincipal()), auditSummary(e))
	}
	return t.flush()
}

// maxAuditSummary bounds the summary column.
const maxAuditSummary = 100

// auditSummary says in a few words what an entry records.
func auditSummary(e *trustfedv1.AuditEntry) string {
	s := "-"
	switch {
	case e.GetError() != "":
		s = "refused: " + e.GetError()
	case e.GetType() == "DECISION":
		var st trustfedv1.DecisionStatement
		if err := proto.Unmarshal(e.GetDecision().GetStatement(), &st); err != nil || e.GetDecision() == nil {
			s = "decision (statement does not decode)"
			break
		}
		s = fmt.Sprintf("%s %s %s->%s", strings.ToLower(formatDecision(st.GetDecision())), st.GetAction(), st.GetFromOrganizationId(), st.GetToOrganizationId())
	case e.GetType() == "LEVEL_CHANGE":
		lc := e.GetLevelChange()
		s = fmt.Sprintf("%s: %s -> %s", lc.GetOrganizationId(), formatLevel(lc.GetFromLevel()), formatLevel(lc.GetToLevel()))
	case e.GetType() == "CASCADE":
		s = "cascade " + orDash(e.GetCascadeId())
		if ev := e.GetCascadeEvent(); ev != nil {
			s += fmt.Sprintf(": %s of %s", strings.TrimPrefix(ev.Kind.String(), "EVENT_KIND_"), ev.OrganizationId)
			if ev.Reason != "" {
				s += " (" + ev.Reason + ")"
			}
		}
	case e.GetType() == "GATEWAY_REFUSAL":
		g := e.GetGatewayRefusal()
		s = fmt.Sprintf("%s %s %s %s", orDash(g.GetCode()), orDash(g.GetDirection()), orDash(g.GetPartnerOrganizationId()), orDash(g.GetAction()))
		if g.GetDetail() != "" {
			s += ": " + g.GetDetail()
		}
	case e.GetType() == "AUTH_FAILURE":
		af := e.GetAuthFailure()
		s = fmt.Sprintf("%s %s", orDash(af.GetCode()), orDash(af.GetMethod()))
		if af.GetReason() != "" {
			s += ": " + af.GetReason()
		}
	}
	s = clean(s)
	if r := []rune(s); len(r) > maxAuditSummary {
		s = string(r[:maxAuditSummary-1]) + "…"
	}
	return s
}

func newAuditProofCmd(a *app) *cobra.Command {
	var trust headTrust
	var treeSize uint64
	cmd := &cobra.Command{
		Use:   "proof SEQ [--tree-size N]",
		Short: "Prove one audit entry is in the signed log, and show it",
		Long: `Fetch entry SEQ with its inclusion proof and verify it against the newest
signed tree head (verified as "trustfed audit sth" does). With --tree-size
the proof is in that older tree, which is then proven consistent with the
signed one.`,
		Example: "  trustfed audit proof 1234",
		Args:    exactArgs("SEQ"),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := strconv.ParseUint(args[0], 10, 64)
			if err != nil {
				return usageErrorf("SEQ %q is not an entry number", args[0])
			}
			if cmd.Flags().Changed("tree-size") && treeSize <= seq {
				return usageErrorf("--tree-size %d must be larger than SEQ %d", treeSize, seq)
			}
			if err := trust.parse(cmd); err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				head, err := trust.verify(ctx, c)
				if err != nil {
					return err
				}
				rec, size, err := proveAuditEntry(ctx, c, seq, treeSize, head.cp)
				if err != nil {
					return err
				}
				verified := fmt.Sprintf("in the signed tree of %d entries (root %s)", head.cp.Size, base64.StdEncoding.EncodeToString(head.cp.Root))
				if size != head.cp.Size {
					verified = fmt.Sprintf("in the tree of %d entries, a prefix of the signed tree of %d entries (root %s)", size, head.cp.Size, base64.StdEncoding.EncodeToString(head.cp.Root))
				}
				return a.print(rec, func(w io.Writer) error { return writeAuditEntry(w, rec, verified) })
			})
		},
	}
	trust.addFlags(cmd)
	cmd.Flags().Uint64Var(&treeSize, "tree-size", 0, "prove the entry in the tree of N entries (at most the signed tree's size; default: the signed tree)")
	return cmd
}

// proveAuditEntry fetches entry seq with its inclusion proof in the tree of size
// entries (0 = cp's) and verifies it against cp: directly, or for an older
// tree through the root the proof implies and a consistency proof to cp.
func proveAuditEntry(ctx context.Context, c *client.Client, seq, size uint64, cp attestation.Checkpoint) (*trustfedv1.AuditRecord, uint64, error) {
	if size == 0 {
		size = cp.Size
	}
	if size > cp.Size {
		return nil, 0, fmt.Errorf("--tree-size %d is beyond the signed tree of %d entries", size, cp.Size)
	}
	if seq >= size {
		return nil, 0, fmt.Errorf("entry %d is not in the signed tree of %d entries", seq, size)
	}
	resp, err := c.Audit().GetInclusionProof(ctx, &trustfedv1.GetInclusionProofRequest{Sequence: seq, TreeSize: size})
	if err != nil {
		return nil, 0, err
	}
	if resp.GetSequence() != seq || resp.GetTreeSize() != size {
		return nil, 0, fmt.Errorf("%w: asked to prove entry %d in %d entries, got entry %d in %d", client.ErrAuditProof, seq, size, resp.GetSequence(), resp.GetTreeSize())
	}
	proven := cp
	if size < cp.Size {
		h := rfc6962.DefaultHasher
		root, err := proof.RootFromInclusionProof(h, seq, size, h.HashLeaf(resp.GetLeaf()), resp.GetHashes())
		if err != nil {
			return nil, 0, fmt.Errorf("%w: entry %d in the tree of %d: %v", client.ErrAuditProof, seq, size, err)
		}
		proven = attestation.Checkpoint{Origin: cp.Origin, Size: size, Root: root}
		cons, err := c.Audit().GetConsistencyProof(ctx, &trustfedv1.GetConsistencyProofRequest{First: size, Second: cp.Size})
		if err != nil {
			return nil, 0, err
		}
		if err := client.VerifyConsistency(proven, cp, cons.GetHashes()); err != nil {
			return nil, 0, err
		}
	}
	rec := &trustfedv1.AuditRecord{Sequence: seq, Leaf: resp.GetLeaf(), InclusionProof: resp.GetHashes()}
	if err := proveAuditRecord(rec, proven); err != nil {
		return nil, 0, err
	}
	return rec, size, nil
}

// writeAuditEntry prints one proven entry as key-value rows.
func writeAuditEntry(w io.Writer, rec *trustfedv1.AuditRecord, verified string) error {
	e := rec.GetEntry()
	t := newTable(w)
	t.row("Sequence:", fmt.Sprint(rec.GetSequence()))
	t.row("Verified:", verified)
	t.row("Time:", formatTime(e.GetTime()))
	t.row("Raft index:", fmt.Sprint(e.GetLogIndex()))
	t.row("Type:", orDash(e.GetType()))
	t.row("Organisations:", orDash(strings.Join(e.GetOrganizationIds(), ", ")))
	t.row("Principal:", orDash(e.GetPrincipal()))
	t.row("Summary:", auditSummary(e))
	var modes []string
	for _, m := range e.GetCompliance() {
		modes = append(modes, formatEnum(m.String(), "COMPLIANCE_MODE_"))
	}
	t.row("Compliance:", orDash(strings.Join(modes, ", ")))
	if len(e.GetCommandSha256()) > 0 {
		t.row("Command SHA-256:", hex.EncodeToString(e.GetCommandSha256()))
		t.row("Redacted:", formatBool(e.GetRedacted()))
	}
	if d := e.GetDecision(); d != nil {
		t.row("Signed by:", orDash(d.GetKeyId())+" on node "+orDash(d.GetNodeId()))
	}
	if lc := e.GetLevelChange(); lc != nil {
		writeLevelCaps(t, lc.GetCaps())
	}
	if af := e.GetAuthFailure(); af != nil {
		t.row("Identity:", orDash(af.GetIdentity()))
		t.row("Peer:", orDash(af.GetPeer())+" on node "+orDash(af.GetNodeId()))
	}
	return t.flush()
}

func newAuditWitnessCmd(a *app) *cobra.Command {
	var org, keyFile, stateFile, registryKey string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "witness --org ORG --org-key KEYFILE [--state FILE] [--every DURATION]",
		Short: "Witness the audit log: verify the newest tree head extends the last one you cosigned, then cosign it",
		Long: `Witness the audit log as a member organisation: fetch the newest signed
tree head, verify the registry's signature and that the log only grew since
the checkpoint you cosigned last (kept in --state, default
./trustfed-witness-ORG.json), then cosign it with the organisation's key
and submit the cosignature. A registry showing a different history is
refused and nothing is cosigned. --every repeats the round until
interrupted; network errors are reported and retried at the next round.`,
		Example: "  trustfed audit witness --org acme-bank --org-key acme-bank.key --every 1m",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateOrgID("--org", org); err != nil {
				return err
			}
			if registryKey != "" {
				if _, err := note.NewVerifier(registryKey); err != nil {
					return usageErrorf("--registry-key %q is not a note verifier key: %v", registryKey, err)
				}
			}
			if every < 0 || (every > 0 && every < time.Second) {
				return usageErrorf("--every %s must be at least 1s (or 0: one round)", every)
			}
			if stateFile == "" {
				stateFile = "trustfed-witness-" + org + ".json"
			}
			key, err := loadOrgKey(keyFile)
			if err != nil {
				return err
			}
			return a.withClient(cmd, func(ctx context.Context, c *client.Client) error {
				w := witnessRound{a: a, c: c, org: org, key: key, registryKey: registryKey, stateFile: stateFile}
				if every == 0 {
					return w.run(ctx)
				}
				tick := time.NewTicker(every)
				defer tick.Stop()
				for {
					if err := w.run(ctx); err != nil {
						if ctx.Err() != nil {
							return nil
						}
						if !transientAuditError(err) {
							return err
						}
						fmt.Fprintf(a.stderr, "warning: %s (next round in %s)\n", describeError(err), every)
					}
					select {
					case <-ctx.Done():
						return nil
					case <-tick.C:
					}
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&org, "org", "", "the witnessing organisation (the witness name) (required)")
	f.StringVar(&keyFile, "org-key", "", "the organisation's ed25519 private key (required)")
	f.StringVar(&keyFile, "key", "", "")
	_ = f.MarkDeprecated("key", "use --org-key")
	f.StringVar(&stateFile, "state", "", "file keeping the last cosigned checkpoint (default ./trustfed-witness-ORG.json)")
	f.StringVar(&registryKey, "registry-key", "", "pin the registry's checkpoint verifier key (ORIGIN+HASH+KEY); default: the newest key GetKeys publishes")
	f.DurationVar(&every, "every", 0, "repeat every DURATION until interrupted (0 = one round)")
	_ = cmd.MarkFlagRequired("org")
	cmd.MarkFlagsOneRequired("org-key", "key")
	return cmd
}

// transientAuditError reports whether a witness round may simply be tried
// again later: the network or the cluster, never a proof that failed.
func transientAuditError(err error) bool {
	if errors.Is(err, client.ErrAuditProof) {
		return false
	}
	return client.IsUnknownOutcome(err)
}

// witnessState is the state file of "audit witness": the last checkpoint
// the organisation cosigned.
type witnessState struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   []byte `json:"root"` // base64 in JSON
	Time   string `json:"time,omitempty"`
}

// witnessRound is one cosigning round of "audit witness".
type witnessRound struct {
	a           *app
	c           *client.Client
	org         string
	key         ed25519.PrivateKey
	registryKey string
	stateFile   string
}

func (w witnessRound) run(ctx context.Context) error {
	last, err := loadWitnessState(w.stateFile)
	if err != nil {
		return err
	}
	vkey := w.registryKey
	if vkey == "" {
		origin := ""
		if last != nil {
			origin = last.Origin
		} else {
			sth, err := w.c.Audit().GetSignedTreeHead(ctx, &trustfedv1.GetSignedTreeHeadRequest{})
			if err != nil {
				return err
			}
			origin = sth.GetOrigin()
		}
		// A cluster whose nodes certify checkpoints needs no registry key
		// (Witness then verifies with the node keys from GetKeys).
		vkey, _ = w.c.RegistryVerifierKey(ctx, origin)
	}
	cp, err := w.c.Witness(ctx, w.org, w.key, vkey, last)
	if err != nil {
		return err
	}
	st := witnessState{Origin: cp.Origin, Size: cp.Size, Root: cp.Root, Time: time.Now().UTC().Format(time.RFC3339)}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encode witness state: %w", err)
	}
	if err := attestation.WriteFile(w.stateFile, append(data, '\n'), 0o644, true); err != nil {
		return err
	}
	if w.a.output == outputJSON {
		return writePlainJSON(w.a.stdout, st)
	}
	_, err = fmt.Fprintf(w.a.stdout, "%s  %s cosigned %s at %d entries (root %s)\n",
		st.Time, w.org, cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Root))
	if err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// loadWitnessState reads the state file; nil if there is none yet.
func loadWitnessState(path string) (*attestation.Checkpoint, error) {
	data, err := readBounded(path, 64<<10, "witness state")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st witnessState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("witness state %s: %w", path, err)
	}
	if st.Origin == "" || len(st.Root) != sha256.Size {
		return nil, fmt.Errorf("witness state %s: want an origin and a 32-byte root", path)
	}
	return &attestation.Checkpoint{Origin: st.Origin, Size: st.Size, Root: st.Root}, nil
}
