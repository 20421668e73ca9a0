package gateway

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/trustfed/trustfed/attestation"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Receive verifies an inbound envelope and hands it to the agent
// (Config.Deliver), failing closed: the reply says accepted, or refused
// with the code of the first check that failed. The agent's answer, if
// any, goes back sealed in the reply (through the outbound pipeline: the
// registry's decision for the way back, the payload policy, the gate).
func (g *Gateway) Receive(ctx context.Context, env *gatewayv1.Envelope) *gatewayv1.Reply {
	m, err := g.verify(ctx, env, "", nil)
	if err != nil {
		return refusal(err)
	}
	var answer []byte
	if g.cfg.Deliver != nil {
		if answer, err = g.cfg.Deliver(ctx, m); err != nil {
			g.log.Warn("the agent failed on an inbound message", "from", m.From, "action", m.Action, "error", err)
			return refusal(refuseErr(CodeHandler, err, "the receiving agent failed"))
		}
	}
	reply := &gatewayv1.Reply{Accepted: true}
	if answer != nil {
		resp, _, _, err := g.seal(ctx, m.From, m.Action, answer, SendOptions{SessionID: m.SessionID}, m.Nonce, false)
		if err != nil {
			reply.Code, reply.Message = string(CodeOf(err)), "the answer was not sent: "+err.Error()
			return reply
		}
		reply.Response = resp
	}
	return reply
}

func refusal(err error) *gatewayv1.Reply {
	code := CodeOf(err)
	if code == "" {
		code = CodeMalformed
	}
	return &gatewayv1.Reply{Code: string(code), Message: err.Error()}
}

// verify runs every inbound check on env and returns the message. from and
// inReplyTo, when set, are what an answer to one of this gateway's
// envelopes must name.
func (g *Gateway) verify(ctx context.Context, env *gatewayv1.Envelope, from string, inReplyTo []byte) (*Message, error) {
	now := g.now()
	o, err := openEnvelope(env, g.cfg.FederationCA, now, &g.certs)
	if err != nil {
		return nil, g.refused(err, nil)
	}
	b := o.Body
	switch {
	case b.RecipientOrganizationId != g.cfg.Organization:
		return nil, g.refused(refuse(CodeWrongRecipient, "envelope is for %q", b.RecipientOrganizationId), b)
	case from != "" && b.SenderOrganizationId != from:
		return nil, g.refused(refuse(CodeWrongRecipient, "the answer comes from %q, not %q", b.SenderOrganizationId, from), b)
	case inReplyTo != nil && !bytes.Equal(b.InReplyTo, inReplyTo):
		return nil, g.refused(refuse(CodeMalformed, "the answer does not answer the envelope sent (in_reply_to)"), b)
	}
	if d := now.Sub(b.SendTime.AsTime()); d > g.cfg.Window || d < -g.cfg.Window {
		return nil, g.refused(refuse(CodeOutsideWindow, "send_time is %s away from this gateway's clock (window %s)", d.Round(time.Millisecond), g.cfg.Window), b)
	}
	st, err := g.verifyDecision(ctx, b.Decision, now)
	if err != nil {
		return nil, g.refused(err, b)
	}
	switch {
	case st.FromOrganizationId != b.SenderOrganizationId || st.ToOrganizationId != b.RecipientOrganizationId:
		return nil, g.refused(refuse(CodeDecisionMismatch, "the decision is for %s → %s, the envelope %s → %s", st.FromOrganizationId, st.ToOrganizationId, b.SenderOrganizationId, b.RecipientOrganizationId), b)
	case st.Action != b.Action:
		return nil, g.refused(refuse(CodeDecisionMismatch, "the decision is for action %q, the envelope %q", st.Action, b.Action), b)
	case st.SessionId != b.SessionId:
		return nil, g.refused(refuse(CodeDecisionMismatch, "the decision is for session %q, the envelope %q", st.SessionId, b.SessionId), b)
	case st.Decision != trustfedv1.Decision_DECISION_ALLOW:
		return nil, g.refused(&RefusedError{Code: CodeDecisionDenied, Detail: "the envelope carries a DENY decision", Reasons: st.Reasons}, b)
	case !g.cache.healthy.Load():
		return nil, g.refused(refuse(CodeUnconfirmed, "the invalidation stream is down: cannot confirm the decision still holds"), b)
	case g.cache.stale(st):
		return nil, g.refused(refuse(CodeDecisionStale, "an event about %s or %s (or a stream gap) came after the decision's index %d", st.FromOrganizationId, st.ToOrganizationId, st.Index), b)
	}
	fresh, full := g.replay.add(b.SenderOrganizationId+"/"+b.SenderNodeId+"/"+string(b.Nonce), now)
	switch {
	case full:
		return nil, g.refused(refuse(CodeReplayed, "the replay store is full: refusing until nonces expire"), b)
	case !fresh:
		return nil, g.refused(refuse(CodeReplayed, "nonce already seen from %s/%s", b.SenderOrganizationId, b.SenderNodeId), b)
	}
	if err := g.policy.Inbound(ctx, g.policyInput(st, b.Payload)); err != nil {
		return nil, g.refused(refuseErr(CodeControls, err, "payload policy (level %d)", st.EffectiveLevel), b)
	}
	if err := g.inG.Inspect(ctx, GateMessage{Direction: Inbound, From: b.SenderOrganizationId, To: b.RecipientOrganizationId, Action: b.Action, Payload: b.Payload}); err != nil {
		return nil, g.refused(refuseErr(CodeGate, err, "inbound gate"), b)
	}
	return &Message{From: b.SenderOrganizationId, FromNode: b.SenderNodeId, To: b.RecipientOrganizationId, Action: b.Action,
		Payload: b.Payload, SessionID: b.SessionId, Nonce: b.Nonce, Decision: st}, nil
}

// verifyDecision checks the decision an envelope carries: the statement
// verified before (same bytes) and still valid, or its certificate now.
func (g *Gateway) verifyDecision(ctx context.Context, d *gatewayv1.Decision, now time.Time) (*trustfedv1.DecisionStatement, error) {
	st, h := g.verified.get(d.Statement, now)
	if st != nil {
		return st, nil
	}
	var parsed trustfedv1.DecisionStatement
	if err := unmarshalStatement(d.Statement, &parsed); err != nil {
		return nil, refuseErr(CodeDecisionInvalid, err, "decision.statement does not parse")
	}
	st, err := g.keys.verify(ctx, answerOf(d, &parsed), now, g.opts)
	switch {
	case errors.Is(err, attestation.ErrDecisionExpired):
		return nil, refuseErr(CodeDecisionExpired, err, "decision")
	case err != nil:
		return nil, refuseErr(CodeDecisionInvalid, err, "decision")
	}
	g.verified.put(h, st, now)
	return st, nil
}

// refused logs an inbound refusal and reports it to the registry's audit
// log (report.go), with the envelope's parties.
func (g *Gateway) refused(err error, b *gatewayv1.EnvelopeBody) error {
	g.stats.refused.Add(1)
	g.log.Warn("inbound envelope refused", "code", string(CodeOf(err)), "from", b.GetSenderOrganizationId(), "node", b.GetSenderNodeId(), "action", b.GetAction(), "error", err)
	g.report(Inbound, b.GetSenderOrganizationId(), b.GetAction(), err)
	return err
}
