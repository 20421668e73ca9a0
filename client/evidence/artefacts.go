package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Audit entry types that are not command names (registry/state).
const (
	typeDecision    = "DECISION"
	typeAuthFailure = "AUTH_FAILURE"
	typeLevelChange = "LEVEL_CHANGE"
	typeCascade     = "CASCADE"
	typeCorrupt     = "CORRUPT_COMMAND"
	typeRefusal     = "GATEWAY_REFUSAL"
)

// isCommand reports whether an entry records a command (its type is the
// command's name).
func isCommand(e *trustfedv1.AuditEntry) bool {
	switch e.Type {
	case typeDecision, typeAuthFailure, typeLevelChange, typeCascade, typeCorrupt, typeRefusal:
		return false
	}
	return true
}

// payloadTypes are the command payloads the artefacts decode, by audit
// type (registry/state keeps the full table).
var payloadTypes = map[string]proto.Message{
	"REGISTER_ORGANIZATION": (*commandv1.RegisterOrganization)(nil),
	"APPROVE_ORGANIZATION":  (*commandv1.ApproveOrganization)(nil),
	"SUBMIT_PASSPORT":       (*commandv1.SubmitPassport)(nil),
	"PROPOSE_AGREEMENT":     (*commandv1.ProposeAgreement)(nil),
	"SIGN_AGREEMENT":        (*commandv1.SignAgreement)(nil),
	"TERMINATE_AGREEMENT":   (*commandv1.TerminateAgreement)(nil),
	"RECORD_DELIVERIES":     (*commandv1.RecordDeliveries)(nil),
	// Commands that start cascades.
	"PROPOSE_ADMIN_CHANGE": (*commandv1.ProposeAdminChange)(nil),
	"APPROVE_ADMIN_CHANGE": (*commandv1.ApproveAdminChange)(nil),
	"SWEEP":                (*commandv1.Sweep)(nil),
	"CLOSE_SESSION":        (*commandv1.CloseSession)(nil),
}

// commandPayload decodes the payload of a command entry.
func commandPayload(e *trustfedv1.AuditEntry) (proto.Message, error) {
	proto0, ok := payloadTypes[e.Type]
	if !ok {
		return nil, fmt.Errorf("no payload type for %s", e.Type)
	}
	if len(e.Command) == 0 {
		return nil, fmt.Errorf("the entry carries no command")
	}
	var env commandv1.Envelope
	if err := proto.Unmarshal(e.Command, &env); err != nil {
		return nil, fmt.Errorf("the command envelope does not decode: %v", err)
	}
	if name := strings.TrimPrefix(env.Type.String(), "COMMAND_TYPE_"); name != e.Type {
		return nil, fmt.Errorf("the entry's type is %s, its command is %s", e.Type, name)
	}
	msg := proto0.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(env.Payload, msg); err != nil {
		return nil, fmt.Errorf("the %s payload does not decode: %v", e.Type, err)
	}
	return msg, nil
}

// Rendering helpers: every value is rendered the same way on every run.

func ts(t *timestamppb.Timestamp) string {
	if t == nil {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

func b64(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(b)
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// pjson renders a message as compact protojson (proto field names); the
// library's output is not byte-stable (it varies whitespace on purpose),
// compacting it is.
func pjson(m proto.Message) json.RawMessage {
	if m == nil || !m.ProtoReflect().IsValid() {
		return nil
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		s, _ := json.Marshal("not renderable: " + err.Error())
		return s
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		s, _ := json.Marshal("not renderable: " + err.Error())
		return s
	}
	return out.Bytes()
}

func orgs(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
}

// entryRef is what every artefact record says of the entry it comes from.
type entryRef struct {
	Sequence        uint64   `json:"sequence"`
	LogIndex        uint64   `json:"log_index"`
	Time            string   `json:"time"`
	Type            string   `json:"type"`
	OrganizationIDs []string `json:"organization_ids"`
	Principal       string   `json:"principal,omitempty"`
	// For commands: "applied", or "refused" with the error.
	Outcome     string `json:"outcome,omitempty"`
	Error       string `json:"error,omitempty"`
	DecodeError string `json:"decode_error,omitempty"`
}

func refOf(e *trustfedv1.AuditEntry) entryRef {
	r := entryRef{Sequence: e.Sequence, LogIndex: e.LogIndex, Time: ts(e.Time), Type: e.Type,
		OrganizationIDs: orgs(e.OrganizationIds), Principal: e.Principal, Error: e.Error}
	if isCommand(e) || e.Type == typeCorrupt {
		r.Outcome = "applied"
		if e.Error != "" {
			r.Outcome = "refused"
		}
	}
	return r
}

// E01: registrations, approvals, passport submissions.

type passportJSON struct {
	Token                   string `json:"token,omitempty"`
	Serial                  string `json:"serial"`
	IssuerID                string `json:"issuer_id"`
	OrganizationID          string `json:"organization_id"`
	OrganizationKeyID       string `json:"organization_key_id"`
	Level                   uint32 `json:"level"`
	Jurisdiction            string `json:"jurisdiction"`
	ControlProfileDigest    string `json:"control_profile_digest,omitempty"`
	IssuedAt                string `json:"issued_at"`
	NotBefore               string `json:"not_before"`
	ExpiresAt               string `json:"expires_at"`
	IssuerSignatureVerified string `json:"issuer_signature"`
}

// passportOf decodes a passport's claims for readers. The issuer's
// signature is not checked here (the issuer's key is not in the bundle):
// every registry replica verified it at the command's time, and a passport
// it refused makes the command's outcome "refused".
func passportOf(token string, withToken bool) (*passportJSON, string) {
	c, err := attestation.ParsePassportUnverified(token)
	if err != nil {
		return nil, "passport: " + err.Error()
	}
	p := &passportJSON{
		Serial: c.Serial, IssuerID: c.IssuerID, OrganizationID: c.OrganizationID,
		OrganizationKeyID: attestation.Fingerprint(c.OrganizationKey), Level: c.Level, Jurisdiction: c.Jurisdiction,
		ControlProfileDigest: c.ControlProfileDigest,
		IssuedAt:             c.IssuedAt.UTC().Format(time.RFC3339), NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		ExpiresAt:               c.ExpiresAt.UTC().Format(time.RFC3339),
		IssuerSignatureVerified: "checked by the registry when the command applied (see outcome)",
	}
	if withToken {
		p.Token = token
	}
	return p, ""
}

type registrationRecord struct {
	entryRef
	OrganizationID string `json:"organization_id,omitempty"`
	// The signed registration as submitted (trustfed.v1.Registration) and
	// the organisation's signature over it, checked here with the key it
	// names ("valid" or "invalid").
	Registration       json.RawMessage `json:"registration,omitempty"`
	RegistrationSHA256 string          `json:"registration_sha256,omitempty"`
	Signature          string          `json:"signature,omitempty"`
	SignatureCheck     string          `json:"signature_check,omitempty"`
	// The governance passport (in the registration, or submitted alone).
	Passport *passportJSON `json:"passport,omitempty"`
}

func validity(ok bool) string {
	if ok {
		return "valid"
	}
	return "invalid"
}

func registrationOf(e *trustfedv1.AuditEntry) registrationRecord {
	r := registrationRecord{entryRef: refOf(e)}
	msg, err := commandPayload(e)
	if err != nil {
		r.DecodeError = err.Error()
		return r
	}
	switch c := msg.(type) {
	case *commandv1.RegisterOrganization:
		r.RegistrationSHA256, r.Signature = sha(c.Registration), b64(c.Signature)
		var reg trustfedv1.Registration
		if err := proto.Unmarshal(c.Registration, &reg); err != nil {
			r.DecodeError = "registration: " + err.Error()
			return r
		}
		r.OrganizationID, r.Registration = reg.OrganizationId, pjson(&reg)
		r.SignatureCheck = validity(len(reg.PublicKey) == ed25519.PublicKeySize &&
			attestation.Verify(reg.PublicKey, attestation.PurposeRegistration, c.Registration, c.Signature) == nil)
		r.Passport, r.DecodeError = passportOf(reg.Passport, false)
	case *commandv1.ApproveOrganization:
		r.OrganizationID = c.OrganizationId
	case *commandv1.SubmitPassport:
		r.OrganizationID, r.Signature = c.OrganizationId, b64(c.Signature)
		r.Passport, r.DecodeError = passportOf(c.Passport, true)
		if r.Passport != nil {
			// The submission is signed by the organisation, whose key the
			// passport names (the registry checks both are the same).
			cl, _ := attestation.ParsePassportUnverified(c.Passport)
			r.SignatureCheck = validity(attestation.Verify(cl.OrganizationKey, attestation.PurposePassport, []byte(c.Passport), c.Signature) == nil)
		}
	}
	return r
}

// E02: agreement proposals, signatures, terminations.

type agreementRecord struct {
	entryRef
	AgreementID string `json:"agreement_id,omitempty"`
	// PROPOSE_AGREEMENT: the terms both parties sign (trustfed.v1.AgreementTerms).
	Terms       json.RawMessage `json:"terms,omitempty"`
	TermsSHA256 string          `json:"terms_sha256,omitempty"`
	// SIGN_AGREEMENT and TERMINATE_AGREEMENT: the party and its signature.
	OrganizationID string          `json:"organization_id,omitempty"`
	Signature      string          `json:"signature,omitempty"`
	Termination    json.RawMessage `json:"termination,omitempty"`

	parties [2]string
	reason  string
}

func agreementOf(e *trustfedv1.AuditEntry) agreementRecord {
	r := agreementRecord{entryRef: refOf(e)}
	msg, err := commandPayload(e)
	if err != nil {
		r.DecodeError = err.Error()
		return r
	}
	switch c := msg.(type) {
	case *commandv1.ProposeAgreement:
		r.TermsSHA256 = sha(c.Terms)
		var t trustfedv1.AgreementTerms
		if err := proto.Unmarshal(c.Terms, &t); err != nil {
			r.DecodeError = "terms: " + err.Error()
			return r
		}
		r.AgreementID, r.Terms = t.AgreementId, pjson(&t)
		r.parties = [2]string{t.OrganizationAId, t.OrganizationBId}
	case *commandv1.SignAgreement:
		r.AgreementID, r.OrganizationID, r.Signature = c.AgreementId, c.OrganizationId, b64(c.Signature)
	case *commandv1.TerminateAgreement:
		r.Signature = b64(c.Signature)
		var t trustfedv1.AgreementTermination
		if err := proto.Unmarshal(c.Termination, &t); err != nil {
			r.DecodeError = "termination: " + err.Error()
			return r
		}
		r.AgreementID, r.OrganizationID, r.Termination, r.reason = t.AgreementId, t.OrganizationId, pjson(&t), t.Reason
	}
	return r
}

// agreementSummary is an agreement's life as the entries show it (applied
// commands only).
type agreementSummary struct {
	OrganizationAID  string          `json:"organization_a_id,omitempty"`
	OrganizationBID  string          `json:"organization_b_id,omitempty"`
	ProposedSequence *uint64         `json:"proposed_sequence,omitempty"`
	ProposedAt       string          `json:"proposed_at,omitempty"`
	TermsSHA256      string          `json:"terms_sha256,omitempty"`
	Signatures       []agreementStep `json:"signatures"`
	Terminated       *agreementStep  `json:"terminated,omitempty"`
}

type agreementStep struct {
	Sequence       uint64 `json:"sequence"`
	Time           string `json:"time"`
	OrganizationID string `json:"organization_id"`
	Reason         string `json:"reason,omitempty"`
}

// E03 and E05: decisions.

type reasonJSON struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func reasonsOf(rs []*trustfedv1.Reason) []reasonJSON {
	out := make([]reasonJSON, len(rs))
	for i, r := range rs {
		out[i] = reasonJSON{Code: r.GetCode(), Message: r.GetMessage()}
	}
	return out
}

func decisionName(d trustfedv1.Decision) string { return strings.TrimPrefix(d.String(), "DECISION_") }

// decisionOf decodes a DECISION entry's signed statement.
func decisionOf(e *trustfedv1.AuditEntry) (*trustfedv1.DecisionStatement, error) {
	if e.Decision == nil {
		return nil, fmt.Errorf("the entry carries no decision")
	}
	var st trustfedv1.DecisionStatement
	if err := proto.Unmarshal(e.Decision.Statement, &st); err != nil {
		return nil, fmt.Errorf("the decision statement does not decode: %v", err)
	}
	return &st, nil
}

type levelDecision struct {
	FromOrganizationID string `json:"from_organization_id"`
	ToOrganizationID   string `json:"to_organization_id"`
	Action             string `json:"action"`
	FromLevel          uint32 `json:"from_level"`
	ToLevel            uint32 `json:"to_level"`
	EffectiveLevel     uint32 `json:"effective_level"`
	RequiredLevel      uint32 `json:"required_level"`
	Decision           string `json:"decision"`
	// The Raft index of the state the levels were computed on.
	StateIndex uint64 `json:"state_index"`
	DecidedAt  string `json:"decided_at"`
	ValidUntil string `json:"valid_until"`
	KeyID      string `json:"key_id"`
	NodeID     string `json:"node_id"`
}

type levelChange struct {
	OrganizationID string          `json:"organization_id"`
	FromLevel      uint32          `json:"from_level"`
	ToLevel        uint32          `json:"to_level"`
	Caps           json.RawMessage `json:"caps"`
}

type levelRecord struct {
	entryRef
	Decision    *levelDecision `json:"decision,omitempty"`
	LevelChange *levelChange   `json:"level_change,omitempty"`
}

func levelDecisionOf(e *trustfedv1.AuditEntry) levelRecord {
	r := levelRecord{entryRef: refOf(e)}
	st, err := decisionOf(e)
	if err != nil {
		r.DecodeError = err.Error()
		return r
	}
	r.Decision = &levelDecision{
		FromOrganizationID: st.FromOrganizationId, ToOrganizationID: st.ToOrganizationId, Action: st.Action,
		FromLevel: st.FromLevel, ToLevel: st.ToLevel, EffectiveLevel: st.EffectiveLevel, RequiredLevel: st.RequiredLevel,
		Decision: decisionName(st.Decision), StateIndex: st.Index, DecidedAt: ts(st.DecidedAt), ValidUntil: ts(st.ValidUntil),
		KeyID: e.Decision.KeyId, NodeID: e.Decision.NodeId,
	}
	return r
}

func levelChangeOf(e *trustfedv1.AuditEntry) levelRecord {
	lc := e.GetLevelChange()
	caps := []byte("[")
	for i, c := range lc.GetCaps() {
		if i > 0 {
			caps = append(caps, ',')
		}
		caps = append(caps, pjson(c)...)
	}
	caps = append(caps, ']')
	return levelRecord{entryRef: refOf(e), LevelChange: &levelChange{
		OrganizationID: lc.GetOrganizationId(), FromLevel: lc.GetFromLevel(), ToLevel: lc.GetToLevel(), Caps: caps,
	}}
}

type controlRecord struct {
	entryRef
	FromOrganizationID string       `json:"from_organization_id,omitempty"`
	ToOrganizationID   string       `json:"to_organization_id,omitempty"`
	Action             string       `json:"action,omitempty"`
	DataTypes          []string     `json:"data_types,omitempty"`
	Value              int64        `json:"value,omitempty"`
	SessionID          string       `json:"session_id,omitempty"`
	Decision           string       `json:"decision,omitempty"`
	Reasons            []reasonJSON `json:"reasons,omitempty"`
	AgreementID        string       `json:"agreement_id,omitempty"`
	AuthorizationID    string       `json:"authorization_id,omitempty"`
	// The controls resolved from both organisations' profiles, the most
	// restrictive of each (trustfed.v1.ControlProfile).
	ResolvedControls json.RawMessage `json:"resolved_controls,omitempty"`
	StateIndex       uint64          `json:"state_index,omitempty"`
}

func controlOf(e *trustfedv1.AuditEntry) controlRecord {
	r := controlRecord{entryRef: refOf(e)}
	st, err := decisionOf(e)
	if err != nil {
		r.DecodeError = err.Error()
		return r
	}
	for _, t := range st.DataTypes {
		r.DataTypes = append(r.DataTypes, strings.TrimPrefix(t.String(), "PII_TYPE_"))
	}
	r.FromOrganizationID, r.ToOrganizationID, r.Action = st.FromOrganizationId, st.ToOrganizationId, st.Action
	r.Value, r.SessionID, r.Decision, r.Reasons = st.Value, st.SessionId, decisionName(st.Decision), reasonsOf(st.Reasons)
	r.AgreementID, r.AuthorizationID, r.ResolvedControls, r.StateIndex = st.AgreementId, st.AuthorizationId, pjson(st.Controls), st.Index
	return r
}
