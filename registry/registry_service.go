package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/policy"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// registryService implements trustfedv1.RegistryService on the shared core.
type registryService struct {
	trustfedv1.UnsafeRegistryServiceServer
	*Server
}

// CheckInteraction decides whether from may perform action with to. A
// quorum-certified decision that a write overtook between its read and its
// audit batch (the signers refused it: decision.ErrStale) is decided again
// once, on the new state, as a new statement in a new batch certified on
// its own, within the call's deadline: the caller gets an answer instead
// of UNAVAILABLE. A decision that took a use of an authorisation is not
// decided again (it would take a second use); its caller retries.
func (s *registryService) CheckInteraction(ctx context.Context, req *trustfedv1.CheckInteractionRequest) (*trustfedv1.CheckInteractionResponse, error) {
	resp, err := s.checkInteraction(ctx, req)
	if err != nil && isStale(err) && resp.GetAuthorizationUseIndex() == 0 {
		s.log.Debug("a write overtook the decision before its batch: deciding again on the new state", "error", err)
		s.metrics.redecided()
		resp, err = s.checkInteraction(ctx, req)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// checkInteraction decides, logs and certifies one decision. When the
// signers refused it, it returns the error with the refused response.
func (s *registryService) checkInteraction(ctx context.Context, req *trustfedv1.CheckInteractionRequest) (*trustfedv1.CheckInteractionResponse, error) {
	resp, r, now, term, err := s.decideThroughLog(ctx, req)
	if err != nil {
		return nil, err
	}
	if takesAuthorizationUse(r, resp) {
		if resp, r, now, term, err = s.decideWithUse(ctx, req); err != nil {
			return nil, err
		}
	}
	if err := s.signDecision(ctx, r, req, resp, now); err != nil {
		return nil, err
	}
	if s.auditsDecisions() {
		p, _ := PrincipalFrom(ctx)
		res, err := s.batcher.Append(ctx, term, decisionEvent(resp, s.cfg.NodeID, p.ID))
		if err != nil {
			return nil, fmt.Errorf("audit the decision: %w", err)
		}
		resp.AuditSequence = res.seq
		if resp.Certification == trustfedv1.Certification_CERTIFICATION_QUORUM {
			if res.cert == nil {
				var refused *decisionsRefused
				switch {
				case errors.As(res.certErr, &refused):
					res.certErr = refused.reason(resp.Statement)
				case res.certErr == nil:
					res.certErr = status.Error(codes.Unavailable, errNotCertified.Error()+": retry")
				}
				return resp, fmt.Errorf("certify the decision: %w", res.certErr)
			}
			resp.Certificate = res.cert
		}
	}
	s.metrics.decided(resp)
	return resp, nil
}

// decisionEvent is the audit event of the decision resp this node made
// for principal: the event, its oneof and the decision in one allocation
// (one per check).
func decisionEvent(resp *trustfedv1.CheckInteractionResponse, nodeID, principal string) *commandv1.AuditEvent {
	m := &struct {
		ev  commandv1.AuditEvent
		one commandv1.AuditEvent_Decision
		d   trustfedv1.AuditDecision
	}{}
	m.d.Statement, m.d.Signature, m.d.KeyId, m.d.NodeId = resp.Statement, resp.Signature, resp.KeyId, nodeID
	m.one.Decision = &m.d
	m.ev.Event, m.ev.Principal = &m.one, principal
	return &m.ev
}

// decide validates a check, reads the state it asks for and computes the
// (unsigned) decision at the answering node's time.
func (s *Server) decide(ctx context.Context, req *trustfedv1.CheckInteractionRequest) (*trustfedv1.CheckInteractionResponse, *state.Reader, time.Time, error) {
	resp, r, now, _, err := s.decideWith(ctx, req, func(ctx context.Context, c trustfedv1.Consistency) (*state.Reader, *trustfedv1.ReadMeta, uint64, error) {
		r, meta, err := s.read(ctx, c)
		return r, meta, 0, err
	}, 0)
	return resp, r, now, err
}

// decideThroughLog is decide for a decision whose audit entry is committed
// before it is answered: on the leader it reads without a read-index round
// and returns the term its audit entry must commit in (readForDecision).
func (s *Server) decideThroughLog(ctx context.Context, req *trustfedv1.CheckInteractionRequest) (*trustfedv1.CheckInteractionResponse, *state.Reader, time.Time, uint64, error) {
	return s.decideWith(ctx, req, s.readForDecision, 0)
}

// takesAuthorizationUse: resp would ALLOW on a granted authorisation whose
// uses are counted, so one must be taken before it is answered.
func takesAuthorizationUse(r *state.Reader, resp *trustfedv1.CheckInteractionResponse) bool {
	if resp.Decision != trustfedv1.Decision_DECISION_ALLOW || resp.AuthorizationId == "" {
		return false
	}
	a, ok := r.Authorization(resp.AuthorizationId)
	return ok && state.Limited(a)
}

// decideWithUse takes one use of the authorisation req presents through
// the log (CONSUME_AUTHORIZATION; only the leader proposes, and a follower
// forwards such checks to it: see consumesAuthorization), then decides
// again on a state that includes it, holding that use. When no use is left
// (another check took the last one, here or on another node), the decision
// is made again without one and is a DENY: a use is never shared.
func (s *Server) decideWithUse(ctx context.Context, req *trustfedv1.CheckInteractionRequest) (*trustfedv1.CheckInteractionResponse, *state.Reader, time.Time, uint64, error) {
	rid, err := requestID("")
	if err != nil {
		return nil, nil, time.Time{}, 0, err
	}
	consume := &commandv1.ConsumeAuthorization{AuthorizationId: req.AuthorizationId, Check: &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: req.FromOrganizationId, ToOrganizationId: req.ToOrganizationId, Action: req.Action,
		DataTypes: req.DataTypes, Value: req.Value,
	}}
	use, consumeErr := s.propose(ctx, consume, rid)
	var refused *state.Error
	switch {
	case errors.As(consumeErr, &refused):
		use = 0 // decided again without a use: the refusal is the decision's reason
	case consumeErr != nil:
		return nil, nil, time.Time{}, 0, fmt.Errorf("take a use of authorization %s: %w", req.AuthorizationId, consumeErr)
	}
	resp, r, now, term, err := s.decideWith(ctx, req, s.readForDecision, use)
	if err != nil {
		return nil, nil, now, 0, err
	}
	if use == 0 && takesAuthorizationUse(r, resp) {
		// The use was refused on a state this read does not include yet.
		return nil, nil, now, 0, status.Errorf(codes.Aborted, "authorization %s: no use could be taken (%v): retry", req.AuthorizationId, consumeErr)
	}
	resp.AuthorizationUseIndex = use
	return resp, r, now, term, nil
}

type decisionRead func(context.Context, trustfedv1.Consistency) (*state.Reader, *trustfedv1.ReadMeta, uint64, error)

// decideWith decides req on the state read gives, holding the use of its
// authorisation taken at index use (0: none taken; see Evaluate).
func (s *Server) decideWith(ctx context.Context, req *trustfedv1.CheckInteractionRequest, read decisionRead, use uint64) (*trustfedv1.CheckInteractionResponse, *state.Reader, time.Time, uint64, error) {
	var now time.Time
	if err := validateCheck(req); err != nil {
		return nil, nil, now, 0, err
	}
	r, meta, term, err := read(ctx, req.GetConsistency())
	if err != nil {
		return nil, nil, now, 0, err
	}
	now = s.clock()
	resp, err := decision.Evaluate(r, req, now, use)
	if err != nil {
		return nil, nil, now, 0, err
	}
	forgeDecision(resp) // nothing, outside the forging test build
	resp.Meta = meta
	return resp, r, now, term, nil
}

func validateCheck(req *trustfedv1.CheckInteractionRequest) error {
	if err := state.ValidateOrganizationID("from_organization_id", req.GetFromOrganizationId()); err != nil {
		return err
	}
	if err := state.ValidateOrganizationID("to_organization_id", req.GetToOrganizationId()); err != nil {
		return err
	}
	if req.FromOrganizationId == req.ToOrganizationId {
		return state.Invalid("to_organization_id", "an organization cannot interact with itself")
	}
	if req.GetAction() == "" {
		return state.Invalid("action", "is required (one of %v)", policy.Actions())
	}
	if _, ok := policy.RequiredLevel(req.Action); !ok {
		return state.Invalid("action", "unknown action %q (one of %v)", req.Action, policy.Actions())
	}
	return validateCheckDetails(req)
}

// GetKeys publishes the signing public keys with their history: the
// cluster's registry key and every endorsed node key, with validity and
// revocation, so that older signatures keep verifying.
func (s *registryService) GetKeys(ctx context.Context, _ *trustfedv1.GetKeysRequest) (*trustfedv1.GetKeysResponse, error) {
	r, _, err := s.read(ctx, trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return nil, err
	}
	keys, err := r.PublishedKeys()
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetKeysResponse{Keys: keys}, nil
}

// GetOrganization returns one organisation.
func (s *registryService) GetOrganization(ctx context.Context, req *trustfedv1.GetOrganizationRequest) (*trustfedv1.GetOrganizationResponse, error) {
	o, _, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.Organization]{
		field: "organization_id", id: req.GetOrganizationId(), notFound: "organization %q does not exist",
		validate: state.ValidateOrganizationID, lookup: (*state.Reader).Organization})
	if err != nil {
		return nil, err
	}
	return &trustfedv1.GetOrganizationResponse{Organization: o, Meta: meta}, nil
}

// ListOrganizations lists organisations in id order, a page at a time.
func (s *registryService) ListOrganizations(ctx context.Context, req *trustfedv1.ListOrganizationsRequest) (*trustfedv1.ListOrganizationsResponse, error) {
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	orgs, next := r.Organizations(after, pageSize(req.GetPageSize()))
	if p, _ := PrincipalFrom(ctx); p.Organization != "" {
		// An organisation-scoped caller sees its own organisation only.
		orgs, next = nil, ""
		if o, ok := r.Organization(p.Organization); ok && after == "" {
			orgs = append(orgs, o)
		}
	}
	return &trustfedv1.ListOrganizationsResponse{Organizations: orgs, NextPageToken: encodePageToken(next), Meta: meta}, nil
}

// RequestAuthorization opens a dual-authorisation request for an
// interaction that is denied only because its controls require two
// approvals. It expires after the federation's freshness window and, once
// granted, backs max_uses ALLOW decisions (one unless the request asks for
// more, at most state.MaxAuthorizationUses).
func (s *registryService) RequestAuthorization(ctx context.Context, req *trustfedv1.RequestAuthorizationRequest) (*trustfedv1.RequestAuthorizationResponse, error) {
	check := req.GetCheck()
	if check == nil {
		return nil, state.Invalid("check", "is required")
	}
	if check.AuthorizationId != "" {
		return nil, state.Invalid("check.authorization_id", "must be empty when requesting an authorization")
	}
	if err := state.ValidateMaxUses("max_uses", req.GetMaxUses()); err != nil {
		return nil, err
	}
	rid, err := requestID(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	resp, r, now, err := s.decide(ctx, check)
	if err != nil {
		return nil, err
	}
	if !resp.RequiresDualAuthorization {
		return nil, state.FailedPrecondition("check", "this interaction does not require dual authorisation (decision: %v)", resp.Decision)
	}
	if i := slices.IndexFunc(resp.Reasons, func(r *trustfedv1.Reason) bool { return r.Code != policy.ReasonDualAuthorization }); i >= 0 {
		return nil, state.FailedPrecondition("check", "the interaction is denied for another reason too: %s: %s", resp.Reasons[i].Code, resp.Reasons[i].Message)
	}
	sum := sha256.Sum256([]byte("authorization\x00" + rid))
	st := &trustfedv1.AuthorizationStatement{
		AuthorizationId:    "auth-" + hex.EncodeToString(sum[:8]),
		FromOrganizationId: check.FromOrganizationId,
		ToOrganizationId:   check.ToOrganizationId,
		Action:             check.Action,
		DataTypes:          check.DataTypes,
		Value:              check.Value,
		ExpireTime:         timestamppb.New(now.Add(r.FreshnessWindow()).Truncate(1e9)),
		MaxUses:            max(req.GetMaxUses(), 1),
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("marshal authorization statement: %w", err)
	}
	if _, err := s.propose(ctx, &commandv1.CreateAuthorization{Statement: b}, rid); err != nil {
		return nil, err
	}
	a, _ := s.store.Read().Authorization(st.AuthorizationId)
	return &trustfedv1.RequestAuthorizationResponse{Authorization: a}, nil
}

// GetAuthorization returns a dual-authorisation request.
func (s *registryService) GetAuthorization(ctx context.Context, req *trustfedv1.GetAuthorizationRequest) (*trustfedv1.GetAuthorizationResponse, error) {
	a, _, meta, err := readOne(ctx, s.Server, req.GetConsistency(), byID[*trustfedv1.Authorization]{
		field: "authorization_id", id: req.GetAuthorizationId(), notFound: "authorization %q does not exist",
		validate: state.ValidateAuthorizationID, lookup: (*state.Reader).Authorization})
	if err != nil {
		return nil, err
	}
	if err := scopeCheck(ctx, "authorization_id", a.GetParsedStatement().GetFromOrganizationId(), a.GetParsedStatement().GetToOrganizationId()); err != nil {
		return nil, err
	}
	return &trustfedv1.GetAuthorizationResponse{Authorization: a, Meta: meta}, nil
}
