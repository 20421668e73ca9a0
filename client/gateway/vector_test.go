package gateway_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trustfed/trustfed/client/gateway"
	gatewayv1 "github.com/trustfed/trustfed/proto/trustfed/gateway/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// vectorBody is the test vector of docs/envelope.md.
func vectorBody() *gatewayv1.EnvelopeBody {
	return &gatewayv1.EnvelopeBody{
		Version: 1, SenderOrganizationId: "bank-a", SenderNodeId: "gw-1", RecipientOrganizationId: "bank-b",
		Action: "task_send", Payload: []byte("hello"), Nonce: bytes.Repeat([]byte{0x07}, gateway.NonceSize),
		SendTime:          timestamppb.New(time.Unix(1796601600, 0)),
		Decision:          &gatewayv1.Decision{Statement: []byte{0x0a, 0x06, 'b', 'a', 'n', 'k', '-', 'a'}, Certification: trustfedv1.Certification_CERTIFICATION_QUORUM},
		SenderCertificate: []byte{0x30, 0x00},
	}
}

// TestEnvelopeVectorInDocs: the body bytes and signature docs/envelope.md
// shows are what Seal makes, and they verify (the doc's vector is the
// implementation's).
func TestEnvelopeVectorInDocs(t *testing.T) {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{0x01}, ed25519.SeedSize))
	env, err := gateway.Seal(key, vectorBody())
	require.NoError(t, err)
	msg := append([]byte("trustfed/gateway-envelope/v1\x00"), env.Body...)
	require.True(t, ed25519.Verify(key.Public().(ed25519.PublicKey), msg, env.Signature))
	doc, err := os.ReadFile("../../docs/envelope.md")
	require.NoError(t, err)
	text := strings.Join(strings.Fields(string(doc)), "")
	for name, b := range map[string][]byte{"public key": key.Public().(ed25519.PublicKey), "body": env.Body, "signature": env.Signature} {
		require.Contains(t, text, hex.EncodeToString(b), "docs/envelope.md must show the vector's %s", name)
	}
	t.Logf("public key %x\nbody %x\nsignature %x", key.Public(), env.Body, env.Signature)
}
