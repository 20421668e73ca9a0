package gateway_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/client/gateway"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// trio is bank-a with agreements with bank-b and bank-c; bank-a sends
// through a capture transport, bank-b's clock can be moved.
type trio struct {
	f       *testFed
	a, b, c *testGateway
	cap     *capture
	skew    atomic.Int64 // bank-b's clock offset, nanoseconds
}

func startTrio(t *testing.T) *trio {
	tr := &trio{f: startFed(t, []string{"bank-a", "bank-b", "bank-c"}, "task_send"), cap: newCapture()}
	viaCapture := func(c *gateway.Config) { c.Transport = tr.cap }
	tr.a = tr.f.start(t, "bank-a", listen(t), nil, viaCapture)
	tr.b = tr.f.start(t, "bank-b", listen(t), nil, viaCapture, func(c *gateway.Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(tr.skew.Load())) }
	})
	tr.c = tr.f.start(t, "bank-c", listen(t), nil, viaCapture)
	return tr
}

// envelope has bank-a seal a task for to (captured, not delivered) and
// returns it with its parsed body.
func (tr *trio) envelope(t *testing.T, to string) (*gatewayv1.Envelope, *gatewayv1.EnvelopeBody) {
	t.Helper()
	_, err := tr.a.Send(ctxT(t), to, "task_send", []byte("task"), gateway.SendOptions{})
	require.NoError(t, err)
	env := tr.cap.last(t, to)
	var body gatewayv1.EnvelopeBody
	require.NoError(t, proto.Unmarshal(env.Body, &body))
	return env, &body
}

// requireRefused checks that bank-b refuses env with code.
func requireRefused(t *testing.T, g *testGateway, env *gatewayv1.Envelope, code gateway.Code) {
	t.Helper()
	reply := g.Receive(ctxT(t), env)
	require.False(t, reply.Accepted, "accepted")
	require.Equal(t, string(code), reply.Code, reply.Message)
}

func resign(t *testing.T, key ed25519.PrivateKey, body *gatewayv1.EnvelopeBody) *gatewayv1.Envelope {
	t.Helper()
	env, err := gateway.Seal(key, body)
	require.NoError(t, err)
	return env
}

// TestInboundRefusesTamperedEnvelopes: changing any field of a signed
// envelope (without the sender's key) is refused, then the untouched
// envelope is accepted once and refused as a replay.
func TestInboundRefusesTamperedEnvelopes(t *testing.T) {
	tr := startTrio(t)
	env, body := tr.envelope(t, "bank-b")
	other := tr.b.member.Leaf.Raw // a valid member certificate of another node

	cases := []struct {
		name   string
		mutate func(b *gatewayv1.EnvelopeBody)
		code   gateway.Code
	}{
		{"version", func(b *gatewayv1.EnvelopeBody) { b.Version = 2 }, gateway.CodeMalformed},
		{"sender_organization_id", func(b *gatewayv1.EnvelopeBody) { b.SenderOrganizationId = "bank-c" }, gateway.CodeBadSender},
		{"sender_node_id", func(b *gatewayv1.EnvelopeBody) { b.SenderNodeId = "node-x" }, gateway.CodeBadSender},
		{"recipient_organization_id", func(b *gatewayv1.EnvelopeBody) { b.RecipientOrganizationId = "bank-c" }, gateway.CodeBadSignature},
		{"action", func(b *gatewayv1.EnvelopeBody) { b.Action = "task_cancel" }, gateway.CodeBadSignature},
		{"payload", func(b *gatewayv1.EnvelopeBody) { b.Payload = []byte("TASK") }, gateway.CodeBadSignature},
		{"nonce", func(b *gatewayv1.EnvelopeBody) { b.Nonce[0] ^= 1 }, gateway.CodeBadSignature},
		{"send_time", func(b *gatewayv1.EnvelopeBody) { b.SendTime = timestamppb.New(b.SendTime.AsTime().Add(time.Second)) }, gateway.CodeBadSignature},
		{"decision.statement", func(b *gatewayv1.EnvelopeBody) { b.Decision.Statement[len(b.Decision.Statement)-1] ^= 1 }, gateway.CodeBadSignature},
		{"decision.certification", func(b *gatewayv1.EnvelopeBody) {
			b.Decision.Certification = trustfedv1.Certification_CERTIFICATION_SINGLE_NODE
		}, gateway.CodeBadSignature},
		{"decision.certificate", func(b *gatewayv1.EnvelopeBody) { b.Decision.Certificate.Signatures = nil }, gateway.CodeBadSignature},
		{"decision.key_id", func(b *gatewayv1.EnvelopeBody) { b.Decision.KeyId = "SHA256:x" }, gateway.CodeBadSignature},
		{"sender_certificate", func(b *gatewayv1.EnvelopeBody) { b.SenderCertificate = other }, gateway.CodeBadSender},
		{"session_id", func(b *gatewayv1.EnvelopeBody) { b.SessionId = "ses-0000000000000001" }, gateway.CodeBadSignature},
		{"in_reply_to", func(b *gatewayv1.EnvelopeBody) { b.InReplyTo = make([]byte, gateway.NonceSize) }, gateway.CodeBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := proto.CloneOf(body)
			tc.mutate(b)
			raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
			require.NoError(t, err)
			requireRefused(t, tr.b, &gatewayv1.Envelope{Body: raw, Signature: env.Signature}, tc.code)
		})
	}
	t.Run("signature", func(t *testing.T) {
		sig := append([]byte(nil), env.Signature...)
		sig[0] ^= 1
		requireRefused(t, tr.b, &gatewayv1.Envelope{Body: env.Body, Signature: sig}, gateway.CodeBadSignature)
	})
	t.Run("truncated body", func(t *testing.T) {
		requireRefused(t, tr.b, &gatewayv1.Envelope{Body: env.Body[:len(env.Body)/2], Signature: env.Signature}, gateway.CodeMalformed)
	})
	t.Run("signed by a key the federation CA did not certify", func(t *testing.T) {
		ca, err := attestation.NewCA("rogue", time.Now(), time.Hour)
		require.NoError(t, err)
		pub, key, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		certPEM, _, _, err := ca.IssueMember("bank-a", body.SenderNodeId, pub, time.Now(), time.Hour)
		require.NoError(t, err)
		leaf, err := attestation.ParseCertificatePEM(certPEM)
		require.NoError(t, err)
		b := proto.CloneOf(body)
		b.SenderCertificate = leaf.Raw
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeBadSender)
	})

	reply := tr.b.Receive(ctxT(t), env)
	require.True(t, reply.Accepted, "the untouched envelope: %s %s", reply.Code, reply.Message)
	requireRefused(t, tr.b, env, gateway.CodeReplayed)
}

// TestInboundRefusesBadDecisions: a sender node holding its own key still
// cannot make the receiver accept a decision for another pair, another
// action, a DENY, an expired decision, or one sent outside the window.
func TestInboundRefusesBadDecisions(t *testing.T) {
	tr := startTrio(t)
	key := tr.a.member.Key
	_, toB := tr.envelope(t, "bank-b")
	_, toC := tr.envelope(t, "bank-c")
	fresh := func(b *gatewayv1.EnvelopeBody) *gatewayv1.EnvelopeBody {
		b = proto.CloneOf(b)
		b.Nonce = make([]byte, gateway.NonceSize)
		_, _ = rand.Read(b.Nonce)
		b.SendTime = timestamppb.Now()
		return b
	}

	t.Run("wrong pair", func(t *testing.T) {
		b := fresh(toB)
		b.Decision = toC.Decision // bank-a → bank-c's decision, to bank-b
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeDecisionMismatch)
	})
	t.Run("wrong recipient", func(t *testing.T) {
		requireRefused(t, tr.b, resign(t, key, fresh(toC)), gateway.CodeWrongRecipient)
	})
	t.Run("wrong action", func(t *testing.T) {
		b := fresh(toB)
		b.Action = "task_cancel"
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeDecisionMismatch)
	})
	t.Run("wrong session", func(t *testing.T) {
		b := fresh(toB)
		b.SessionId = "ses-0000000000000001"
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeDecisionMismatch)
	})
	t.Run("deny", func(t *testing.T) {
		mc := tr.a.member.Dial(t, client.Config{Addr: tr.f.dev.GRPCAddr(), CACertFile: tr.f.dev.CAFile(), Timeout: 30 * time.Second})
		resp, err := mc.Registry().CheckInteraction(ctxT(t), &trustfedv1.CheckInteractionRequest{FromOrganizationId: "bank-a", ToOrganizationId: "bank-b", Action: "context_share"})
		require.NoError(t, err)
		require.Equal(t, trustfedv1.Decision_DECISION_DENY, resp.Decision)
		b := fresh(toB)
		b.Action = "context_share"
		b.Decision = &gatewayv1.Decision{Statement: resp.Statement, Certification: resp.Certification, Certificate: resp.Certificate}
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeDecisionDenied)
	})
	t.Run("forged statement", func(t *testing.T) {
		var st trustfedv1.DecisionStatement
		require.NoError(t, proto.Unmarshal(toB.Decision.Statement, &st))
		st.Action = "task_cancel"
		raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(&st)
		require.NoError(t, err)
		b := fresh(toB)
		b.Action = "task_cancel"
		b.Decision.Statement = raw
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeDecisionInvalid)
	})
	t.Run("outside the window", func(t *testing.T) {
		b := fresh(toB)
		b.SendTime = timestamppb.New(time.Now().Add(-3 * gateway.DefaultWindow))
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeOutsideWindow)
	})
	t.Run("expired", func(t *testing.T) {
		var st trustfedv1.DecisionStatement
		require.NoError(t, proto.Unmarshal(toB.Decision.Statement, &st))
		later := st.ValidUntil.AsTime().Add(time.Second)
		tr.skew.Store(int64(time.Until(later)))
		defer tr.skew.Store(0)
		b := fresh(toB)
		b.SendTime = timestamppb.New(later)
		requireRefused(t, tr.b, resign(t, key, b), gateway.CodeDecisionExpired)
	})
	t.Run("valid", func(t *testing.T) {
		reply := tr.b.Receive(ctxT(t), resign(t, key, fresh(toB)))
		require.True(t, reply.Accepted, "%s %s", reply.Code, reply.Message)
	})
}
