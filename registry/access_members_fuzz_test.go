package registry

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The two member-certificate methods need no credentials: whatever they
// are sent, they never panic, and a certificate comes out only for a
// challenge the registry signed, answered with the enrolled node's key,
// naming that node.
func FuzzIssueMemberCertificate(f *testing.F) {
	r := newMemberRig(f, true)
	key := r.enrol("acme", "gw-1")
	enrolled := key.Public().(ed25519.PublicKey)
	valid := r.answer("acme", "gw-1", key)
	f.Add(valid.Challenge, valid.RegistrySignature, valid.NodeSignature, int64(0))
	f.Add(valid.Challenge, valid.NodeSignature, valid.RegistrySignature, int64(3600e9))
	f.Add([]byte{}, []byte{}, []byte{}, int64(-1))
	f.Fuzz(func(t *testing.T, challenge, registrySig, nodeSig []byte, validity int64) {
		req := &trustfedv1.IssueMemberCertificateRequest{Challenge: challenge, RegistrySignature: registrySig, NodeSignature: nodeSig}
		if validity != 0 {
			req.Validity = durationpb.New(durationFrom(validity))
		}
		resp, err := r.access.IssueMemberCertificate(context.Background(), req)
		if err != nil {
			return
		}
		var ch trustfedv1.MemberChallenge
		if proto.Unmarshal(challenge, &ch) != nil {
			t.Fatal("a certificate for a challenge that does not decode")
		}
		if err := attestation.Verify(enrolled, attestation.PurposeMemberChallenge, challenge, nodeSig); err != nil {
			t.Fatalf("a certificate without the node's signature: %v", err)
		}
		cert, err := attestation.ParseCertificatePEM([]byte(resp.CertificatePem))
		if err != nil {
			t.Fatal(err)
		}
		org, node, ok := attestation.MemberFromCert(cert)
		pub, _ := cert.PublicKey.(ed25519.PublicKey)
		if !ok || org != ch.OrganizationId || node != ch.NodeId || !bytes.Equal(pub, enrolled) {
			t.Fatalf("certificate for %s/%s (key ok: %v), challenge for %s/%s", org, node, bytes.Equal(pub, enrolled), ch.OrganizationId, ch.NodeId)
		}
	})
}

func FuzzGetMemberChallenge(f *testing.F) {
	r := newMemberRig(f, true)
	r.enrol("acme", "gw-1")
	f.Add("acme", "gw-1")
	f.Add("", "")
	f.Add("acme", "GW\x00")
	f.Fuzz(func(t *testing.T, org, node string) {
		resp, err := r.access.GetMemberChallenge(context.Background(), &trustfedv1.GetMemberChallengeRequest{OrganizationId: org, NodeId: node})
		if err != nil {
			return
		}
		if org != "acme" || node != "gw-1" {
			t.Fatalf("a challenge for %q/%q, which is not enrolled", org, node)
		}
		var ch trustfedv1.MemberChallenge
		if err := proto.Unmarshal(resp.Challenge, &ch); err != nil || ch.OrganizationId != org || ch.NodeId != node || len(ch.Nonce) != 32 {
			t.Fatalf("challenge %v: %v", &ch, err)
		}
	})
}

func durationFrom(n int64) time.Duration { return time.Duration(n) }
