package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
)

// levelNames are the names of trust levels 0..4.
var levelNames = [maxLevel + 1]string{"UNTRUSTED", "VERIFIED", "ATTESTED", "TRUSTED", "PRIVILEGED"}

// formatLevel renders a level as "3 (TRUSTED)".
func formatLevel(l uint32) string {
	if l <= maxLevel {
		return fmt.Sprintf("%d (%s)", l, levelNames[l])
	}
	return fmt.Sprintf("%d (UNKNOWN)", l)
}

// formatTime renders a timestamp as RFC 3339 in UTC, "-" if unset.
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	if err := ts.CheckValid(); err != nil {
		return "invalid"
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// formatDuration renders a duration, "-" if unset.
func formatDuration(d *durationpb.Duration) string {
	if d == nil {
		return "-"
	}
	if err := d.CheckValid(); err != nil {
		return "invalid"
	}
	return d.AsDuration().String()
}

// formatEnum renders an enum value without its type prefix, e.g.
// ORGANIZATION_STATUS_ACTIVE as ACTIVE.
func formatEnum(name, prefix string) string {
	return strings.TrimPrefix(name, prefix)
}

func formatOrgStatus(s trustfedv1.OrganizationStatus) string {
	return formatEnum(s.String(), "ORGANIZATION_STATUS_")
}

func formatAgreementStatus(s trustfedv1.AgreementStatus) string {
	return formatEnum(s.String(), "AGREEMENT_STATUS_")
}

func formatConsistency(c trustfedv1.Consistency) string {
	return formatEnum(c.String(), "CONSISTENCY_")
}

func formatDecision(d trustfedv1.Decision) string {
	return formatEnum(d.String(), "DECISION_")
}

func formatBool(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// orDash returns "-" for an empty string.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clean makes server-supplied text safe for a table: control characters
// (tabs, newlines, terminal escapes) become spaces.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// jsonOptions is REST's JSON encoding, indented.
func jsonOptions() protojson.MarshalOptions {
	o := registry.JSONMarshalOptions
	o.Multiline, o.Indent = true, "  "
	return o
}

// writeJSON prints msg as REST does (registry.JSONMarshalOptions), indented.
func writeJSON(w io.Writer, msg proto.Message) error {
	data, err := jsonOptions().Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s\n", data); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writePlainJSON prints a non-protobuf value as indented JSON; its types
// name their fields in lowerCamelCase, as protojson does.
func writePlainJSON(w io.Writer, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	if _, err := fmt.Fprintf(w, "%s\n", data); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// table writes aligned columns.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

// row writes one row; cells are cleaned of control characters.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(t.tw, "\t")
		}
		fmt.Fprint(t.tw, clean(c))
	}
	fmt.Fprint(t.tw, "\n")
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// writeMetaRows adds the freshness of a read to a key-value table.
func writeMetaRows(t *table, m *trustfedv1.ReadMeta) {
	if m == nil {
		return
	}
	t.row("Raft index:", fmt.Sprint(m.GetIndex()))
	t.row("Consistency:", formatConsistency(m.GetConsistency()))
	t.row("Answered by:", orDash(m.GetNodeId()))
}

// writeOrganization prints one organisation as key-value rows: identity,
// key, passport, onboarding, then the bookkeeping.
func writeOrganization(w io.Writer, o *trustfedv1.Organization, m *trustfedv1.ReadMeta) error {
	t := newTable(w)
	t.row("ID:", o.GetId())
	t.row("Name:", o.GetName())
	t.row("Status:", formatOrgStatus(o.GetStatus()))
	t.row("Jurisdiction:", orDash(o.GetJurisdiction()))
	t.row("Declared level:", formatLevel(o.GetDeclaredLevel()))
	t.row("Key fingerprint:", orDash(o.GetPublicKeyFingerprint()))
	if p := o.GetPassport(); p != nil {
		t.row("Passport:", p.GetSerial())
		t.row("  issuer:", p.GetIssuerId())
		t.row("  level:", formatLevel(p.GetLevel()))
		t.row("  valid:", formatTime(p.GetNotBefore())+" to "+formatTime(p.GetExpireTime()))
	} else {
		t.row("Passport:", "-")
	}
	if h := o.GetPassportHistory(); len(h) > 0 {
		t.row("Passport history:", strings.Join(h, ", "))
	}
	t.row("Endpoints:", orDash(strings.Join(o.GetNotificationEndpoints(), ", ")))
	if n := strings.Count(o.GetWebhookCaCertificatesPem(), "-----BEGIN CERTIFICATE-----"); n > 0 {
		t.row("Webhook CAs:", fmt.Sprintf("%d certificate(s), trusted for its endpoints", n))
	}
	t.row("Approved:", formatTime(o.GetApproveTime()))
	t.row("Onboarding until:", formatTime(o.GetOnboardingUntil()))
	if ov := o.GetOnboardingOverride(); ov != nil {
		t.row("Onboarding override:", fmt.Sprintf("%s (by %s at %s)", ov.GetReason(), orDash(ov.GetPrincipal()), formatTime(ov.GetTime())))
	} else {
		t.row("Onboarding override:", "-")
	}
	t.row("Created:", formatTime(o.GetCreateTime()))
	t.row("Updated:", formatTime(o.GetUpdateTime()))
	t.row("Create index:", fmt.Sprint(o.GetCreateIndex()))
	t.row("Modify index:", fmt.Sprint(o.GetModifyIndex()))
	writeMetaRows(t, m)
	return t.flush()
}

// writeOrganizations prints organisations as a table.
func writeOrganizations(w io.Writer, orgs []*trustfedv1.Organization) error {
	t := newTable(w)
	t.row("ID", "NAME", "DECLARED", "STATUS", "JURISDICTION", "PASSPORT", "CREATED", "MODIFY INDEX")
	for _, o := range orgs {
		passport := "-"
		if p := o.GetPassport(); p != nil {
			passport = formatLevel(p.GetLevel())
		}
		t.row(o.GetId(), o.GetName(), formatLevel(o.GetDeclaredLevel()), formatOrgStatus(o.GetStatus()),
			orDash(o.GetJurisdiction()), passport, formatTime(o.GetCreateTime()), fmt.Sprint(o.GetModifyIndex()))
	}
	return t.flush()
}

// formatConditions renders an agreement's termination conditions.
func formatConditions(c *trustfedv1.TerminationConditions) string {
	var parts []string
	if c.GetOnPartyRevokedOrSuspended() {
		parts = append(parts, "party revoked or suspended")
	}
	if c.GetOnPassportExpiry() {
		parts = append(parts, "passport expiry")
	}
	if l := c.GetMinLevel(); l > 0 {
		parts = append(parts, fmt.Sprintf("level below %s", formatLevel(l)))
	}
	parts = append(parts, "end date", "termination by a party")
	return strings.Join(parts, "; ")
}

// formatSignature says when a party signed, or that it has not.
func formatSignature(sig []byte, at *timestamppb.Timestamp) string {
	if len(sig) == 0 {
		return "not yet"
	}
	return formatTime(at)
}

// summarizeTerms renders agreement terms on one line.
func summarizeTerms(t *trustfedv1.AgreementTerms) string {
	data := "any"
	if dc := t.GetScope().GetDataCategories(); len(dc) > 0 {
		data = strings.Join(dc, ",")
	}
	return clean(fmt.Sprintf("%s between %s and %s: actions %s; data %s; valid %s to %s; ends on: %s",
		t.GetAgreementId(), t.GetOrganizationAId(), t.GetOrganizationBId(),
		strings.Join(t.GetScope().GetAllowedActions(), ","), data,
		formatTime(t.GetNotBefore()), formatTime(t.GetNotAfter()), formatConditions(t.GetTermination())))
}

// writeAgreement prints one agreement as key-value rows: parties, status,
// scope, window, conditions, signatures, termination, then the bookkeeping.
func writeAgreement(w io.Writer, a *trustfedv1.Agreement, m *trustfedv1.ReadMeta) error {
	terms := a.GetParsedTerms()
	t := newTable(w)
	t.row("ID:", a.GetId())
	t.row("Organisation A:", a.GetOrganizationAId())
	t.row("Organisation B:", a.GetOrganizationBId())
	t.row("Status:", formatAgreementStatus(a.GetStatus()))
	t.row("Actions:", orDash(strings.Join(terms.GetScope().GetAllowedActions(), ", ")))
	t.row("Data categories:", orDash(strings.Join(terms.GetScope().GetDataCategories(), ", ")))
	t.row("Valid from:", formatTime(terms.GetNotBefore()))
	t.row("Valid until:", formatTime(terms.GetNotAfter()))
	t.row("Ends on:", formatConditions(terms.GetTermination()))
	t.row("Signed by "+a.GetOrganizationAId()+":", formatSignature(a.GetSignatureA(), a.GetSignATime()))
	t.row("Signed by "+a.GetOrganizationBId()+":", formatSignature(a.GetSignatureB(), a.GetSignBTime()))
	if a.GetStatus() == trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED || a.GetTerminateTime() != nil {
		t.row("Terminated:", fmt.Sprintf("%s by %s", formatTime(a.GetTerminateTime()), orDash(a.GetTerminatedBy())))
		t.row("Termination reason:", orDash(a.GetTerminationReason()))
	}
	t.row("Created:", formatTime(a.GetCreateTime()))
	t.row("Updated:", formatTime(a.GetUpdateTime()))
	t.row("Create index:", fmt.Sprint(a.GetCreateIndex()))
	t.row("Modify index:", fmt.Sprint(a.GetModifyIndex()))
	writeMetaRows(t, m)
	return t.flush()
}

// writeAgreements prints agreements as a table.
func writeAgreements(w io.Writer, agrs []*trustfedv1.Agreement) error {
	t := newTable(w)
	t.row("ID", "ORG A", "ORG B", "STATUS", "ACTIONS", "VALID UNTIL", "CREATED", "MODIFY INDEX")
	for _, a := range agrs {
		t.row(a.GetId(), a.GetOrganizationAId(), a.GetOrganizationBId(), formatAgreementStatus(a.GetStatus()),
			orDash(strings.Join(a.GetParsedTerms().GetScope().GetAllowedActions(), ",")),
			formatTime(a.GetParsedTerms().GetNotAfter()), formatTime(a.GetCreateTime()), fmt.Sprint(a.GetModifyIndex()))
	}
	return t.flush()
}

// writeLevelCaps adds what bounds one party's level, one row per cap.
func writeLevelCaps(t *table, caps []*trustfedv1.LevelCap) {
	for _, c := range caps {
		t.row("  "+c.GetSource()+":", formatLevel(c.GetLevel()), c.GetDetail())
	}
}

// writeCheck prints a decision: the verdict on the first line, then the
// levels and what caps each party's, the agreement, the reasons and the
// index it was computed at.
func writeCheck(w io.Writer, r *trustfedv1.CheckInteractionResponse) error {
	if _, err := fmt.Fprintln(w, formatDecision(r.GetDecision())); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	t := newTable(w)
	t.row("From level:", formatLevel(r.GetFromLevel()))
	writeLevelCaps(t, r.GetFromLevelCaps())
	t.row("To level:", formatLevel(r.GetToLevel()))
	writeLevelCaps(t, r.GetToLevelCaps())
	t.row("Effective level:", formatLevel(r.GetEffectiveLevel()))
	t.row("Required level:", formatLevel(r.GetRequiredLevel()))
	t.row("Agreement:", orDash(r.GetAgreementId()))
	if r.GetRequiresDualAuthorization() {
		granted := orDash(r.GetAuthorizationId())
		if r.GetAuthorizationUseIndex() != 0 {
			granted += fmt.Sprintf(" (the use taken at index %d)", r.GetAuthorizationUseIndex())
		}
		t.row("Dual authorisation:", "required; granted authorisation: "+granted)
	}
	writeMetaRows(t, r.GetMeta())
	if r.GetDecidedAt() != nil {
		t.row("Decided at:", r.GetDecidedAt().AsTime().UTC().Format(time.RFC3339Nano))
		t.row("Valid until:", r.GetValidUntil().AsTime().UTC().Format(time.RFC3339Nano))
		t.row("Signed by:", orDash(r.GetKeyId()))
	}
	if len(r.GetReasons()) == 0 {
		t.row("Reasons:", "-")
		return t.flush()
	}
	t.row("Reasons:")
	for _, reason := range r.GetReasons() {
		t.row("  "+reason.GetCode(), reason.GetMessage())
	}
	return t.flush()
}

// formatSuffrage is "voter" or "nonvoter" (servers older than the suffrage
// field only say whether a member votes).
func formatSuffrage(m *trustfedv1.ClusterMember) string {
	if m.GetSuffrage() == trustfedv1.Suffrage_SUFFRAGE_NONVOTER || (m.GetSuffrage() == trustfedv1.Suffrage_SUFFRAGE_UNSPECIFIED && !m.GetVoter()) {
		return "nonvoter"
	}
	return "voter"
}

// writeStatus prints a node's view of the cluster, then its members.
func writeStatus(w io.Writer, s *trustfedv1.StatusResponse) error {
	t := newTable(w)
	t.row("Node:", orDash(s.GetNodeId()))
	t.row("State:", orDash(s.GetState()))
	ready := "yes (knows the leader, caught up with its log; GET /readyz answers 200)"
	if r := s.GetNotReady(); r != "" { // not_ready: older servers set ready only on a leader
		ready = "no: " + r
	}
	t.row("Ready:", ready)
	t.row("Caught up:", formatBool(s.GetCaughtUp()))
	leader := "-"
	if l := s.GetLeader(); l != nil && l.GetNodeId() != "" {
		leader = l.GetNodeId()
		if l.GetApiAddress() != "" {
			leader += " (" + l.GetApiAddress() + ")"
		}
	}
	t.row("Leader:", leader)
	t.row("Term:", fmt.Sprint(s.GetTerm()))
	t.row("Commit index:", fmt.Sprint(s.GetCommitIndex()))
	t.row("Applied index:", fmt.Sprint(s.GetAppliedIndex()))
	t.row("Last log index:", fmt.Sprint(s.GetLastLogIndex()))
	t.row("Last contact:", formatDuration(s.GetLastContact()))
	t.row("Version:", orDash(s.GetVersion()))
	if err := t.flush(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w); err != nil {
		return fmt.Errorf("write output: %w", err)
	}
	return writeMembers(w, s)
}

// writeMembers is the members table of a status answer.
func writeMembers(w io.Writer, s *trustfedv1.StatusResponse) error {
	t := newTable(w)
	t.row("NODE", "RAFT ADDRESS", "API ADDRESS", "SUFFRAGE", "CAUGHT UP", "LEADER")
	for _, m := range s.GetMembers() {
		caughtUp := "-" // only the leader knows
		if s.GetState() == "Leader" {
			caughtUp = formatBool(m.GetCaughtUp())
		}
		t.row(m.GetNodeId(), orDash(m.GetRaftAddress()), orDash(m.GetApiAddress()), formatSuffrage(m), caughtUp, formatBool(m.GetLeader()))
	}
	return t.flush()
}

// isTerminal reports whether w is a terminal: progress bars and other
// redrawn lines are only for people watching, never for logs and pipes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(interface{ Fd() uintptr })
	return ok && term.IsTerminal(int(f.Fd()))
}
