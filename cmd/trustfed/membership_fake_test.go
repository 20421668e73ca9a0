package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// fakeAgreementID is the id the fake gives every proposed agreement.
const fakeAgreementID = "agr-0123456789abcdef"

// memberFake is the membership and issuer state of cliFake: it checks every
// signature the CLI sends the way the registry does, and records requests.
type memberFake struct {
	keys         map[string]ed25519.PublicKey // organisation id -> registered key
	registered   []*trustfedv1.Registration
	proposals    []*trustfedv1.ProposeAgreementRequest
	agreement    *trustfedv1.Agreement
	signs        []*trustfedv1.SignAgreementRequest
	terminations []*trustfedv1.AgreementTermination
	passports    []*trustfedv1.SubmitPassportRequest
	approvals    []*trustfedv1.ApproveOrganizationRequest
	changes      []*trustfedv1.AdminChange // admin changes, signature checked
	records      map[string]*trustfedv1.AdminChangeRecord
	admins       map[string]string // public key fingerprint -> admin id
	quorum       uint32            // approvals an admin change needs (0 = 1)
	policy       *trustfedv1.FederationPolicy
}

func badSignature(err error) error {
	return status.Errorf(codes.InvalidArgument, "signature: %v", err)
}

func (f *cliFake) RegisterOrganization(ctx context.Context, req *trustfedv1.RegisterOrganizationRequest) (*trustfedv1.RegisterOrganizationResponse, error) {
	f.record(ctx)
	var reg trustfedv1.Registration
	if err := proto.Unmarshal(req.GetRegistration(), &reg); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "registration: %v", err)
	}
	if err := attestation.Verify(reg.GetPublicKey(), attestation.PurposeRegistration, req.GetRegistration(), req.GetSignature()); err != nil {
		return nil, badSignature(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := &f.member
	if m.keys == nil {
		m.keys = map[string]ed25519.PublicKey{}
	}
	m.keys[reg.GetOrganizationId()] = reg.GetPublicKey()
	m.registered = append(m.registered, &reg)
	return &trustfedv1.RegisterOrganizationResponse{Organization: &trustfedv1.Organization{
		Id: reg.GetOrganizationId(), Name: reg.GetName(), Jurisdiction: reg.GetJurisdiction(),
		DeclaredLevel: reg.GetDeclaredLevel(), PublicKey: reg.GetPublicKey(),
		PublicKeyFingerprint: attestation.Fingerprint(reg.GetPublicKey()),
		Status:               trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_PENDING,
		ControlProfile:       reg.GetControlProfile(), NotificationEndpoints: reg.GetNotificationEndpoints(),
		Passport: &trustfedv1.Passport{Serial: "p-1", IssuerId: "eu-assessors", Level: 3, Token: reg.GetPassport()},
	}}, nil
}

// key returns the registered key of org.
func (f *cliFake) key(org string) (ed25519.PublicKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.member.keys[org]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "organization %q does not exist", org)
	}
	return k, nil
}

func (f *cliFake) SubmitPassport(ctx context.Context, req *trustfedv1.SubmitPassportRequest) (*trustfedv1.SubmitPassportResponse, error) {
	f.record(ctx)
	k, err := f.key(req.GetOrganizationId())
	if err != nil {
		return nil, err
	}
	if err := attestation.Verify(k, attestation.PurposePassport, []byte(req.GetPassport()), req.GetSignature()); err != nil {
		return nil, badSignature(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.member.passports = append(f.member.passports, req)
	return &trustfedv1.SubmitPassportResponse{Organization: &trustfedv1.Organization{
		Id: req.GetOrganizationId(), Passport: &trustfedv1.Passport{Serial: "p-2", Token: req.GetPassport()}, PassportHistory: []string{"p-1"},
	}}, nil
}

// ProposeAgreement answers Unavailable to the first proposal (so that the
// CLI retries) and records every attempt.
func (f *cliFake) ProposeAgreement(ctx context.Context, req *trustfedv1.ProposeAgreementRequest) (*trustfedv1.ProposeAgreementResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	m := &f.member
	m.proposals = append(m.proposals, req)
	if len(m.proposals) == 1 {
		return nil, status.Error(codes.Unavailable, "leader lost")
	}
	terms := &trustfedv1.AgreementTerms{
		AgreementId: fakeAgreementID, OrganizationAId: req.GetOrganizationAId(), OrganizationBId: req.GetOrganizationBId(),
		Scope: req.GetScope(), NotBefore: req.GetNotBefore(), NotAfter: req.GetNotAfter(), Termination: req.GetTermination(),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(terms)
	if err != nil {
		return nil, err
	}
	m.agreement = &trustfedv1.Agreement{
		Id: fakeAgreementID, OrganizationAId: req.GetOrganizationAId(), OrganizationBId: req.GetOrganizationBId(),
		Status: trustfedv1.AgreementStatus_AGREEMENT_STATUS_PENDING, Terms: b, ParsedTerms: terms,
	}
	return &trustfedv1.ProposeAgreementResponse{Agreement: proto.CloneOf(m.agreement)}, nil
}

func (f *cliFake) GetAgreement(ctx context.Context, req *trustfedv1.GetAgreementRequest) (*trustfedv1.GetAgreementResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if ag := f.member.agreement; ag != nil && ag.GetId() == req.GetAgreementId() {
		return &trustfedv1.GetAgreementResponse{Agreement: proto.CloneOf(ag), Meta: &trustfedv1.ReadMeta{Index: 11}}, nil
	}
	return nil, status.Errorf(codes.NotFound, "agreement %q does not exist", req.GetAgreementId())
}

func (f *cliFake) SignAgreement(ctx context.Context, req *trustfedv1.SignAgreementRequest) (*trustfedv1.SignAgreementResponse, error) {
	f.record(ctx)
	k, err := f.key(req.GetOrganizationId())
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	ag := f.member.agreement
	if ag == nil || ag.GetId() != req.GetAgreementId() {
		return nil, status.Errorf(codes.NotFound, "agreement %q does not exist", req.GetAgreementId())
	}
	if err := attestation.Verify(k, attestation.PurposeAgreement, ag.GetTerms(), req.GetSignature()); err != nil {
		return nil, badSignature(err)
	}
	f.member.signs = append(f.member.signs, req)
	if req.GetOrganizationId() == ag.GetOrganizationAId() {
		ag.SignatureA, ag.SignATime = req.GetSignature(), timestamppb.Now()
	} else {
		ag.SignatureB, ag.SignBTime = req.GetSignature(), timestamppb.Now()
	}
	if len(ag.SignatureA) > 0 && len(ag.SignatureB) > 0 {
		ag.Status = trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE
	}
	return &trustfedv1.SignAgreementResponse{Agreement: proto.CloneOf(ag)}, nil
}

func (f *cliFake) TerminateAgreement(ctx context.Context, req *trustfedv1.TerminateAgreementRequest) (*trustfedv1.TerminateAgreementResponse, error) {
	f.record(ctx)
	var t trustfedv1.AgreementTermination
	if err := proto.Unmarshal(req.GetTermination(), &t); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "termination: %v", err)
	}
	k, err := f.key(t.GetOrganizationId())
	if err != nil {
		return nil, err
	}
	if err := attestation.Verify(k, attestation.PurposeTermination, req.GetTermination(), req.GetSignature()); err != nil {
		return nil, badSignature(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.member.terminations = append(f.member.terminations, &t)
	ag := f.member.agreement
	if ag == nil || ag.GetId() != t.GetAgreementId() {
		return nil, status.Errorf(codes.NotFound, "agreement %q does not exist", t.GetAgreementId())
	}
	ag.Status = trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED
	ag.TerminatedBy, ag.TerminationReason, ag.TerminateTime = t.GetOrganizationId(), t.GetReason(), timestamppb.Now()
	return &trustfedv1.TerminateAgreementResponse{Agreement: proto.CloneOf(ag)}, nil
}

func (f *cliFake) ApproveOrganization(ctx context.Context, req *trustfedv1.ApproveOrganizationRequest) (*trustfedv1.ApproveOrganizationResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.member.approvals = append(f.member.approvals, req)
	return &trustfedv1.ApproveOrganizationResponse{Organization: &trustfedv1.Organization{
		Id: req.GetOrganizationId(), Status: trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE,
	}}, nil
}

func fakeIssuer(id, name string, pub ed25519.PublicKey, maxLevel uint32) *trustfedv1.Issuer {
	return &trustfedv1.Issuer{
		Id: id, Name: name, PublicKey: pub, PublicKeyFingerprint: attestation.Fingerprint(pub),
		MaxLevel: maxLevel, Status: trustfedv1.IssuerStatus_ISSUER_STATUS_ACCREDITED,
	}
}

func (f *cliFake) GetIssuer(ctx context.Context, req *trustfedv1.GetIssuerRequest) (*trustfedv1.GetIssuerResponse, error) {
	f.record(ctx)
	if req.GetIssuerId() != "eu-assessors" {
		return nil, status.Errorf(codes.NotFound, "issuer %q does not exist", req.GetIssuerId())
	}
	return &trustfedv1.GetIssuerResponse{Issuer: fakeIssuer("eu-assessors", "EU Assessors", make(ed25519.PublicKey, ed25519.PublicKeySize), 4),
		Meta: &trustfedv1.ReadMeta{Index: 4}}, nil
}

func (f *cliFake) ListIssuers(ctx context.Context, _ *trustfedv1.ListIssuersRequest) (*trustfedv1.ListIssuersResponse, error) {
	f.record(ctx)
	return &trustfedv1.ListIssuersResponse{Issuers: []*trustfedv1.Issuer{
		fakeIssuer("eu-assessors", "EU Assessors", make(ed25519.PublicKey, ed25519.PublicKeySize), 4),
	}}, nil
}

// ProposeAdminChange checks the approval signature the way the registry
// does, records the change and applies it when the fake's quorum is met.
func (f *cliFake) ProposeAdminChange(ctx context.Context, req *trustfedv1.ProposeAdminChangeRequest) (*trustfedv1.ProposeAdminChangeResponse, error) {
	f.record(ctx)
	var c trustfedv1.AdminChange
	if err := proto.Unmarshal(req.GetChange(), &c); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "change: %v", err)
	}
	if err := attestation.Verify(req.GetApproval().GetPublicKey(), attestation.PurposeAdminChange, req.GetChange(), req.GetApproval().GetSignature()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "approval.signature: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	m := &f.member
	m.changes = append(m.changes, &c)
	if m.records == nil {
		m.records = map[string]*trustfedv1.AdminChangeRecord{}
	}
	sum := sha256.Sum256(req.GetChange())
	rec := &trustfedv1.AdminChangeRecord{
		Id: "chg-" + hex.EncodeToString(sum[:8]), Change: req.GetChange(), Content: &c,
		Status: trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_PENDING, ApprovalsRequired: max(m.quorum, 1),
		Approvals: []*trustfedv1.AdminApproval{{AdminId: m.adminID(req.GetApproval().GetPublicKey())}},
	}
	m.settle(rec)
	m.records[rec.Id] = rec
	return &trustfedv1.ProposeAdminChangeResponse{Change: proto.CloneOf(rec)}, nil
}

func (m *memberFake) adminID(pub []byte) string {
	if id, ok := m.admins[attestation.Fingerprint(pub)]; ok {
		return id
	}
	return attestation.Fingerprint(pub)
}

// settle applies a change whose approvals reach the quorum.
func (m *memberFake) settle(rec *trustfedv1.AdminChangeRecord) {
	if uint32(len(rec.Approvals)) < rec.ApprovalsRequired {
		return
	}
	rec.Status = trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED
	if rec.Content.GetSetOrganizationStatus() != nil {
		rec.CascadeIds = []string{fakeCascadeID} // the registry names the cascades a change started
	}
	if pc := rec.Content.GetUpdateFederationPolicy(); pc != nil {
		p := &trustfedv1.FederationPolicy{OnboardingCapLevel: 2, OnboardingPeriod: durationpb.New(30 * day)}
		if pc.OnboardingCapLevel != nil {
			p.OnboardingCapLevel = pc.GetOnboardingCapLevel()
		}
		if pc.OnboardingPeriod != nil {
			p.OnboardingPeriod = pc.GetOnboardingPeriod()
		}
		m.policy = p
	}
}

func (f *cliFake) GetAdminChange(ctx context.Context, req *trustfedv1.GetAdminChangeRequest) (*trustfedv1.GetAdminChangeResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.member.records[req.GetChangeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "change %s does not exist", req.GetChangeId())
	}
	return &trustfedv1.GetAdminChangeResponse{Change: proto.CloneOf(rec), Meta: &trustfedv1.ReadMeta{Index: 9}}, nil
}

func (f *cliFake) ApproveAdminChange(ctx context.Context, req *trustfedv1.ApproveAdminChangeRequest) (*trustfedv1.ApproveAdminChangeResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	rec, ok := f.member.records[req.GetChangeId()]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "change %s does not exist", req.GetChangeId())
	}
	if err := attestation.Verify(req.GetApproval().GetPublicKey(), attestation.PurposeAdminChange, rec.Change, req.GetApproval().GetSignature()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "approval.signature: %v", err)
	}
	rec.Approvals = append(rec.Approvals, &trustfedv1.AdminApproval{AdminId: f.member.adminID(req.GetApproval().GetPublicKey())})
	f.member.settle(rec)
	return &trustfedv1.ApproveAdminChangeResponse{Change: proto.CloneOf(rec)}, nil
}

func (f *cliFake) GetFederationPolicy(ctx context.Context, _ *trustfedv1.GetFederationPolicyRequest) (*trustfedv1.GetFederationPolicyResponse, error) {
	f.record(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.member.policy
	if p == nil {
		p = &trustfedv1.FederationPolicy{OnboardingCapLevel: 2, OnboardingPeriod: durationpb.New(30 * day)}
	}
	return &trustfedv1.GetFederationPolicyResponse{Policy: proto.CloneOf(p), Meta: &trustfedv1.ReadMeta{Index: 3}}, nil
}

// runFullCLI runs the CLI like runCLI, with the commands another part of
// the tree attaches (issuer accredit|withdraw|list|get, passport revoke)
// added if they are not there yet.
func runFullCLI(env map[string]string, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	a := newApp(&stdout, &stderr, func(k string) string { return env[k] })
	root := newRootCmd(a)
	attachAdminCommands(root)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(context.Background())
	return reportError(&stderr, cmd, err), stdout.String(), stderr.String()
}

// attachAdminCommands adds issuerAdminCommands to the "issuer" group and
// passportRevokeCmd to the "passport" group, each group made if missing,
// unless they are attached already.
func attachAdminCommands(root *cobra.Command) {
	group := func(name string) *cobra.Command {
		for _, c := range root.Commands() {
			if c.Name() == name {
				return c
			}
		}
		g := newGroupCmd(name, name)
		root.AddCommand(g)
		return g
	}
	has := func(g *cobra.Command, name string) bool {
		for _, c := range g.Commands() {
			if c.Name() == name {
				return true
			}
		}
		return false
	}
	if issuer := group("issuer"); !has(issuer, "accredit") {
		issuer.AddCommand(issuerAdminCommands()...)
	}
	if passport := group("passport"); !has(passport, "revoke") {
		passport.AddCommand(passportRevokeCmd())
	}
	prepareTree(root)
}
