package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/client"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// SendOptions describe an interaction beyond its partner and action: they
// are part of the registry check and of the cache key.
type SendOptions struct {
	// DataTypes are the PII types the payload may carry.
	DataTypes []trustfedv1.PiiType
	// Value of the action in minor currency units (0 = none).
	Value int64
	// SessionID is the registry session the message belongs to.
	SessionID string
	// AuthorizationID is a granted dual authorisation covering the
	// interaction, when its controls require one.
	AuthorizationID string
}

// Message is a verified cross-organisation message.
type Message struct {
	From, FromNode, To string
	Action             string
	Payload            []byte
	SessionID          string
	Nonce              []byte
	// Decision is the registry's verified statement the message relied on.
	Decision *trustfedv1.DecisionStatement
}

// Send sends payload to organisation to for action: a registry decision
// (cached or fresh, verified) → DENY refuses with the registry's reasons →
// the payload policy applies the decision's controls → the outbound gate →
// a signed envelope → the transport. It returns the partner's verified
// answer (nil if it sent none). Every refusal is a *RefusedError.
func (g *Gateway) Send(ctx context.Context, to, action string, payload []byte, opts SendOptions) (*Message, error) {
	for attempt := 0; ; attempt++ {
		env, nonce, key, err := g.seal(ctx, to, action, payload, opts, nil, attempt > 0)
		if err != nil {
			return nil, err
		}
		reply, err := g.transport.Deliver(ctx, to, env)
		if err != nil {
			return nil, refuseErr(CodeTransport, err, "deliver to %s", to)
		}
		if !reply.GetAccepted() {
			code := Code(reply.GetCode())
			if code == CodeDecisionStale && attempt == 0 {
				// The partner saw an event this gateway has not seen yet
				// (or its stream reconnected since): ask the registry.
				g.cache.drop(key)
				continue
			}
			return nil, &RefusedError{Code: CodeRefusedByPartner, PartnerCode: code, Detail: reply.GetMessage()}
		}
		if reply.GetResponse() == nil {
			return nil, nil
		}
		m, err := g.verify(ctx, reply.GetResponse(), to, nonce)
		if err != nil {
			return nil, fmt.Errorf("the answer of %s: %w", to, err)
		}
		return m, nil
	}
}

// seal runs the outbound pipeline up to the signed envelope.
func (g *Gateway) seal(ctx context.Context, to, action string, payload []byte, opts SendOptions, inReplyTo []byte, fresh bool) (*gatewayv1.Envelope, []byte, cacheKey, error) {
	key := cacheKey{to: to, action: action, session: opts.SessionID, authorization: opts.AuthorizationID, types: typeBits(opts.DataTypes), value: opts.Value}
	switch {
	case to == "" || len(to) > maxIDLen:
		return nil, nil, key, refuse(CodeMalformed, "to: must be 1..%d bytes", maxIDLen)
	case to == g.cfg.Organization:
		return nil, nil, key, refuse(CodeMalformed, "to: %q is this gateway's own organisation", to)
	case action == "" || len(action) > maxIDLen:
		return nil, nil, key, refuse(CodeMalformed, "action: must be 1..%d bytes", maxIDLen)
	}
	d, err := g.decide(ctx, key, opts, fresh)
	if err != nil {
		return nil, nil, key, err
	}
	st := d.st
	if st.Decision != trustfedv1.Decision_DECISION_ALLOW {
		return nil, nil, key, &RefusedError{Code: CodeDecisionDenied, Detail: fmt.Sprintf("the registry denies %s → %s %q", g.cfg.Organization, to, action), Reasons: st.Reasons}
	}
	out, err := g.policy.Outbound(ctx, g.policyInput(st, payload))
	if err != nil {
		rerr := refuseErr(CodeControls, err, "payload policy (level %d)", st.EffectiveLevel)
		g.report(Outbound, to, action, rerr)
		return nil, nil, key, rerr
	}
	if err := g.outG.Inspect(ctx, GateMessage{Direction: Outbound, From: g.cfg.Organization, To: to, Action: action, Payload: out}); err != nil {
		rerr := refuseErr(CodeGate, err, "outbound gate")
		g.report(Outbound, to, action, rerr)
		return nil, nil, key, rerr
	}
	nonce := make([]byte, NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, key, fmt.Errorf("envelope nonce: %w", err)
	}
	env, err := Seal(g.cfg.Key, &gatewayv1.EnvelopeBody{
		Version: EnvelopeVersion, SenderOrganizationId: g.cfg.Organization, SenderNodeId: g.cfg.Node,
		RecipientOrganizationId: to, Action: action, Payload: out, Nonce: nonce, SendTime: timestamppb.New(g.now()),
		Decision: d.wire, SenderCertificate: g.creds.Certificate().Raw, SessionId: opts.SessionID, InReplyTo: inReplyTo,
	})
	if err != nil {
		return nil, nil, key, err
	}
	return env, nonce, key, nil
}

func (g *Gateway) policyInput(st *trustfedv1.DecisionStatement, payload []byte) PolicyInput {
	return PolicyInput{From: st.FromOrganizationId, To: st.ToOrganizationId, Action: st.Action, Controls: st.Controls,
		Level: st.EffectiveLevel, AgreementID: st.AgreementId, DataTypes: st.DataTypes, Payload: payload}
}

// Decide returns the registry's decision for an interaction of this
// gateway's organisation with to: from the cache while it may be used,
// else from the registry (one call for concurrent misses), verified.
func (g *Gateway) Decide(ctx context.Context, to, action string, opts SendOptions) (*trustfedv1.DecisionStatement, error) {
	d, err := g.decide(ctx, cacheKey{to: to, action: action, session: opts.SessionID, authorization: opts.AuthorizationID, types: typeBits(opts.DataTypes), value: opts.Value}, opts, false)
	if err != nil {
		return nil, err
	}
	return d.st, nil
}

func (g *Gateway) decide(ctx context.Context, key cacheKey, opts SendOptions, fresh bool) (*decided, error) {
	if !fresh {
		if d := g.cache.get(key, g.now().UnixNano()); d != nil {
			g.stats.cacheHits.Add(1)
			return d, nil
		}
	}
	// The shared call must not fail because the caller that started it
	// gave up: it runs without the caller's cancellation (bounded by the
	// registry timeout), and each caller waits on its own context.
	ch := g.flight.DoChan(flightKey(key), func() (any, error) {
		return g.fetch(context.WithoutCancel(ctx), key, opts)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*decided), nil
	case <-ctx.Done():
		return nil, refuseErr(CodeRegistry, ctx.Err(), "waiting for the registry's decision")
	}
}

// fetch asks the registry, verifies the answer and caches an ALLOW.
func (g *Gateway) fetch(ctx context.Context, key cacheKey, opts SendOptions) (*decided, error) {
	req := &trustfedv1.CheckInteractionRequest{
		FromOrganizationId: g.cfg.Organization, ToOrganizationId: key.to, Action: key.action,
		Consistency: trustfedv1.Consistency_CONSISTENCY_LINEARIZABLE, DataTypes: opts.DataTypes, Value: opts.Value,
		SessionId: opts.SessionID, AuthorizationId: opts.AuthorizationID,
	}
	var resp *trustfedv1.CheckInteractionResponse
	err := g.regs.do(ctx, func(ctx context.Context, c *client.Client) error {
		var err error
		g.stats.registryChecks.Add(1)
		resp, err = c.Registry().CheckInteraction(ctx, req)
		return err
	})
	if err != nil {
		code := CodeRegistry
		if c := status.Code(err); c == codes.Unauthenticated || c == codes.PermissionDenied {
			code = CodeNotAuthorized
			g.resync()
		}
		return nil, refuseErr(code, err, "check %s → %s %q", g.cfg.Organization, key.to, key.action)
	}
	st, err := g.keys.verify(ctx, resp, g.now(), g.opts)
	if err != nil {
		return nil, refuseErr(CodeDecisionInvalid, err, "the registry's decision does not verify")
	}
	if err := matchRequest(st, req); err != nil {
		return nil, err
	}
	d := &decided{st: st, wire: wireDecision(resp), validUntil: st.ValidUntil.AsTime().UnixNano()}
	if st.Decision == trustfedv1.Decision_DECISION_ALLOW {
		if g.cache.stale(st) {
			return nil, refuse(CodeDecisionStale, "the registry answered from index %d, before an event this gateway has seen", st.Index)
		}
		g.cache.put(key, d)
	}
	return d, nil
}

// matchRequest refuses a verified statement that answers another question
// than the one asked.
func matchRequest(st *trustfedv1.DecisionStatement, req *trustfedv1.CheckInteractionRequest) error {
	switch {
	case st.FromOrganizationId != req.FromOrganizationId, st.ToOrganizationId != req.ToOrganizationId:
		return refuse(CodeDecisionMismatch, "the decision is for %s → %s, asked %s → %s", st.FromOrganizationId, st.ToOrganizationId, req.FromOrganizationId, req.ToOrganizationId)
	case st.Action != req.Action:
		return refuse(CodeDecisionMismatch, "the decision is for action %q, asked %q", st.Action, req.Action)
	case st.SessionId != req.SessionId:
		return refuse(CodeDecisionMismatch, "the decision is for session %q, asked %q", st.SessionId, req.SessionId)
	case st.Value != req.Value || !slices.Equal(sortedTypes(st.DataTypes), sortedTypes(req.DataTypes)):
		return refuse(CodeDecisionMismatch, "the decision is for other data types or another value than asked")
	}
	return nil
}

func sortedTypes(ts []trustfedv1.PiiType) []trustfedv1.PiiType {
	out := slices.Clone(ts)
	slices.Sort(out)
	return slices.Compact(out)
}

func flightKey(k cacheKey) string {
	return k.to + "\x00" + k.action + "\x00" + k.session + "\x00" + k.authorization + "\x00" +
		strconv.FormatUint(uint64(k.types), 16) + "\x00" + strconv.FormatInt(k.value, 10)
}
