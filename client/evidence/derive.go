package evidence

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// artefact describes one AG-783 evidence file.
type artefact struct {
	file, id, title, retention, description string
}

// The artefacts, in archive order.
const (
	e01 = iota
	e02
	e03
	e04
	e05
	e06
	e07
	numArtefacts
)

var artefacts = [numArtefacts]artefact{
	{"E01-registrations.json", "AG783-E01", "Federation registration records with governance attestation", "7 years",
		"Every REGISTER_ORGANIZATION, APPROVE_ORGANIZATION and SUBMIT_PASSPORT entry of the period: the signed registration as submitted (with the organisation's signature, checked here against the key it names) and the governance passport's claims. Every registry replica verified the passport against its accredited issuer at the command's time; outcome says whether the command applied."},
	{"E02-agreements.json", "AG783-E02", "Bilateral federation agreement documents", "Duration of agreement + 5 years",
		"Every PROPOSE_AGREEMENT, SIGN_AGREEMENT and TERMINATE_AGREEMENT entry of the period, with the terms both parties signed; summary follows each agreement through the applied commands."},
	{"E03-trust-levels.json", "AG783-E03", "Trust level computation logs for all cross-org interactions", "7 years",
		"For every decision: both organisations' levels, the effective level (their minimum), the level the action requires, and the state (Raft index) they were computed on, as the registry signed them. Every LEVEL_CHANGE entry with the caps that bound the new level (declared, passport, onboarding). The signed decision statement does not carry the caps themselves: the level changes record them whenever a level moved."},
	{"E04-revocation-cascades.json", "AG783-E04", "Revocation cascade event logs with per-partner timestamps", "7 years",
		"Every CASCADE entry (the event and the partners it is delivered to) and every RECORD_DELIVERIES entry with each partner's dispatch, attempt, acknowledgement and escalation times; summary merges them per cascade and partner."},
	{"E05-control-resolution.json", "AG783-E05", "Most-restrictive-framework control resolution logs", "7 years",
		"For every decision: the interaction checked, the controls resolved from both organisations' profiles (the most restrictive of each), the result and every reason, as the registry signed them."},
	{"E06-audit-trail.json", "AG783-E06", "Federation audit trail (all federation events, tamper-evident)", "7 years",
		"Summary of entries.jsonl, the tamper-evident trail itself, and how to verify it."},
	{"E07-refused-attempts.json", "AG783-E07", "Adversarial testing reports (trust spoofing, cascade timing, bypass)", "5 years",
		"The attempts the registry refused in the period: authentication and authorisation failures (AUTH_FAILURE), commands the state machine refused (entries with an error) and corrupt commands; summary counts them and the denied interactions by reason."},
}

// e07Note is said in the refused-attempts file.
const e07Note = "The adversarial test suite reports (trust spoofing, cascade timing, bypass) are produced by the continuous integration pipeline and archived with each release; this file is their operational counterpart: what the registry refused in the period."

// howToVerify is said in the audit-trail file.
var howToVerify = []string{
	"Run `trustfed audit verify BUNDLE --registry-key VKEY`, with the registry's checkpoint verifier key obtained out of band, or do by hand what it does:",
	"1. checkpoint.txt is a C2SP signed note: verify the registry's signature with VKEY (golang.org/x/mod/sumdb/note); it names the log (origin), its size and its RFC 6962 root hash.",
	"2. For each line of entries.jsonl, verify the RFC 6962 inclusion proof of the base64 leaf at its sequence in that tree; the leaf is a serialized trustfed.v1.AuditEntry, whose sequence must be the line's.",
	"3. For each DECISION entry, verify the ed25519 signature over \"trustfed/decision/v1\\x00\" + statement with the key of keys.json named by key_id.",
	"4. Recompute every other file from the entries and compare byte for byte; manifest.json lists every file's SHA-256.",
	"`trustfed audit replay` rebuilds the registry state from the whole log and re-derives every decision from it.",
}

// logRef names the signed tree the bundle's entries are proven in.
type logRef struct {
	Origin   string `json:"origin"`
	TreeSize uint64 `json:"tree_size"`
	RootHash string `json:"root_hash"`
}

// artefactHeader opens every evidence file.
type artefactHeader struct {
	EvidenceID  string      `json:"evidence_id"`
	Title       string      `json:"title"`
	Retention   string      `json:"retention"`
	Description string      `json:"description"`
	Note        string      `json:"note,omitempty"`
	Log         logRef      `json:"log"`
	Filters     filtersJSON `json:"filters"`
}

// efile streams one evidence file: its header, its records one by one, a
// count and a summary.
type efile struct {
	w   io.Writer
	n   int
	err error
}

func (f *efile) write(b []byte) {
	if f.err == nil {
		_, f.err = f.w.Write(b)
	}
}

func (f *efile) begin(h artefactHeader) {
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		f.err = err
		return
	}
	f.write(bytes.TrimSuffix(b, []byte("\n}")))
	f.write([]byte(",\n  \"records\": ["))
}

func (f *efile) record(v any) {
	b, err := json.MarshalIndent(v, "    ", "  ")
	if err != nil {
		f.err = fmt.Errorf("render record: %w", err)
		return
	}
	if f.n > 0 {
		f.write([]byte(","))
	}
	f.write([]byte("\n    "))
	f.write(b)
	f.n++
}

func (f *efile) end(summary any) error {
	if f.n > 0 {
		f.write([]byte("\n  "))
	}
	f.write([]byte("],\n  \"count\": " + strconv.Itoa(f.n)))
	if summary != nil {
		b, err := json.MarshalIndent(summary, "  ", "  ")
		if err != nil {
			return fmt.Errorf("render summary: %w", err)
		}
		f.write([]byte(",\n  \"summary\": "))
		f.write(b)
	}
	f.write([]byte("\n}\n"))
	return f.err
}

// trailSummary is the audit-trail file's content.
type trailSummary struct {
	EntryCount      int            `json:"entry_count"`
	FirstSequence   *uint64        `json:"first_sequence,omitempty"`
	LastSequence    *uint64        `json:"last_sequence,omitempty"`
	FirstTime       string         `json:"first_time,omitempty"`
	LastTime        string         `json:"last_time,omitempty"`
	CountsByType    map[string]int `json:"counts_by_type"`
	Decisions       map[string]int `json:"decisions"`
	RefusedCommands int            `json:"refused_commands"`
	Tree            treeJSON       `json:"tree"`
	HowToVerify     []string       `json:"how_to_verify"`
}

type treeJSON struct {
	logRef
	VerifierKey string   `json:"verifier_key"`
	Cosigners   []string `json:"cosigners"`
}

type refusedSummary struct {
	AuthFailuresByCode     map[string]int `json:"auth_failures_by_code"`
	RefusedCommandsByType  map[string]int `json:"refused_commands_by_type"`
	CorruptCommands        int            `json:"corrupt_commands"`
	DeniedDecisionsByCause map[string]int `json:"denied_decisions_by_reason"`
}

// deriver computes the evidence files from the entries, in log order. Build
// writes them into the archive; Verify recomputes them to compare.
type deriver struct {
	hdr   artefactHeader
	tree  treeJSON
	files [numArtefacts]*efile

	agreements map[string]*agreementSummary
	cascades   map[string]*cascadeSummary
	lastCmd    *trustfedv1.AuditEntry // the last command entry seen
	trail      trailSummary
	refused    refusedSummary
}

// newDeriver starts the evidence files on the sinks (one per artefact).
func newDeriver(tree treeJSON, filters filtersJSON, sinks [numArtefacts]io.Writer) *deriver {
	d := &deriver{
		hdr: artefactHeader{Log: tree.logRef, Filters: filters}, tree: tree,
		agreements: map[string]*agreementSummary{}, cascades: map[string]*cascadeSummary{},
		trail: trailSummary{CountsByType: map[string]int{}, Decisions: map[string]int{}},
		refused: refusedSummary{AuthFailuresByCode: map[string]int{}, RefusedCommandsByType: map[string]int{},
			DeniedDecisionsByCause: map[string]int{}},
	}
	for i := range d.files {
		d.files[i] = &efile{w: sinks[i]}
		if i != e06 {
			d.files[i].begin(d.header(i))
		}
	}
	return d
}

func (d *deriver) header(i int) artefactHeader {
	h := d.hdr
	a := artefacts[i]
	h.EvidenceID, h.Title, h.Retention, h.Description = a.id, a.title, a.retention, a.description
	if i == e07 {
		h.Note = e07Note
	}
	return h
}

// add derives what one entry contributes to each evidence file.
func (d *deriver) add(e *trustfedv1.AuditEntry) {
	d.count(e)
	switch e.Type {
	case "REGISTER_ORGANIZATION", "APPROVE_ORGANIZATION", "SUBMIT_PASSPORT":
		d.files[e01].record(registrationOf(e))
	case "PROPOSE_AGREEMENT", "SIGN_AGREEMENT", "TERMINATE_AGREEMENT":
		r := agreementOf(e)
		d.files[e02].record(r)
		d.followAgreement(e, r)
	case typeDecision:
		d.files[e03].record(levelDecisionOf(e))
		d.files[e05].record(controlOf(e))
		if st, err := decisionOf(e); err == nil {
			d.trail.Decisions[decisionName(st.Decision)]++
			for _, r := range st.Reasons {
				d.refused.DeniedDecisionsByCause[r.GetCode()]++
			}
		}
	case typeLevelChange:
		d.files[e03].record(levelChangeOf(e))
	case typeCascade:
		d.files[e04].record(d.cascadeOf(e))
	case "RECORD_DELIVERIES":
		d.files[e04].record(d.deliveriesOf(e))
	case typeAuthFailure:
		d.files[e07].record(refusedOf(e))
		d.refused.AuthFailuresByCode[e.GetAuthFailure().GetCode()]++
	}
	if e.Error != "" && e.Type != typeAuthFailure {
		d.files[e07].record(refusedOf(e))
		if e.Type == typeCorrupt {
			d.refused.CorruptCommands++
		} else {
			d.refused.RefusedCommandsByType[e.Type]++
			d.trail.RefusedCommands++
		}
	}
	if isCommand(e) {
		d.lastCmd = e
	}
}

func (d *deriver) count(e *trustfedv1.AuditEntry) {
	t := &d.trail
	if t.EntryCount == 0 {
		seq := e.Sequence
		t.FirstSequence, t.FirstTime = &seq, ts(e.Time)
	}
	seq := e.Sequence
	t.LastSequence, t.LastTime = &seq, ts(e.Time)
	t.EntryCount++
	t.CountsByType[e.Type]++
}

func (d *deriver) followAgreement(e *trustfedv1.AuditEntry, r agreementRecord) {
	if e.Error != "" || r.DecodeError != "" || r.AgreementID == "" {
		return
	}
	s, ok := d.agreements[r.AgreementID]
	if !ok {
		s = &agreementSummary{Signatures: []agreementStep{}}
		d.agreements[r.AgreementID] = s
	}
	step := agreementStep{Sequence: e.Sequence, Time: ts(e.Time), OrganizationID: r.OrganizationID}
	switch e.Type {
	case "PROPOSE_AGREEMENT":
		seq := e.Sequence
		s.ProposedSequence, s.ProposedAt, s.TermsSHA256 = &seq, ts(e.Time), r.TermsSHA256
		s.OrganizationAID, s.OrganizationBID = r.parties[0], r.parties[1]
	case "SIGN_AGREEMENT":
		s.Signatures = append(s.Signatures, step)
	case "TERMINATE_AGREEMENT":
		step.Reason = r.reason
		s.Terminated = &step
	}
}

func (d *deriver) cascadeOf(e *trustfedv1.AuditEntry) cascadeRecord {
	c := &cascadeStart{CascadeID: e.CascadeId}
	if d.lastCmd != nil && d.lastCmd.LogIndex == e.LogIndex {
		seq := d.lastCmd.Sequence
		c.StartedBySequence, c.StartedByType, c.StartedBy = &seq, d.lastCmd.Type, triggerOf(d.lastCmd)
	}
	s := d.cascade(e.CascadeId)
	seq := e.Sequence
	s.StartedSequence, s.StartedAt = &seq, ts(e.Time)
	return cascadeRecord{entryRef: refOf(e), Cascade: c}
}

func (d *deriver) cascade(id string) *cascadeSummary {
	s, ok := d.cascades[id]
	if !ok {
		s = &cascadeSummary{Partners: map[string]*deliveryJSON{}}
		d.cascades[id] = s
	}
	return s
}

func (d *deriver) deliveriesOf(e *trustfedv1.AuditEntry) cascadeRecord {
	r := cascadeRecord{entryRef: refOf(e), Deliveries: []deliveryJSON{}}
	msg, err := commandPayload(e)
	if err != nil {
		r.DecodeError = err.Error()
		return r
	}
	for _, u := range msg.(*commandv1.RecordDeliveries).GetUpdates() {
		dj := deliveryOf(u.GetCascadeId(), u.GetDelivery())
		r.Deliveries = append(r.Deliveries, dj)
		if e.Error == "" {
			d.cascade(u.GetCascadeId()).merge(dj)
		}
	}
	return r
}

// finish ends every evidence file.
func (d *deriver) finish() error {
	ends := [numArtefacts]any{
		e02: map[string]any{"agreements": d.agreements},
		e04: map[string]any{"cascades": d.cascades},
		e07: d.refused,
	}
	for i, f := range d.files {
		if i == e06 {
			continue
		}
		if err := f.end(ends[i]); err != nil {
			return fmt.Errorf("%s: %w", artefacts[i].file, err)
		}
	}
	d.trail.Tree, d.trail.HowToVerify = d.tree, howToVerify
	doc := struct {
		artefactHeader
		Summary trailSummary `json:"summary"`
	}{d.header(e06), d.trail}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: %w", artefacts[e06].file, err)
	}
	f := d.files[e06]
	f.write(append(b, '\n'))
	if f.err != nil {
		return fmt.Errorf("%s: %w", artefacts[e06].file, f.err)
	}
	return nil
}
