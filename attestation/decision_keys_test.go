package attestation

import (
	"crypto/rand"
	"errors"
	"testing"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// TestVerifyDecisionChecksTheKeyAtDecidedAt: a decision verifies only when
// its key is published and was valid at decided_at: unknown, not yet
// valid, expired and revoked-at-or-before keys are refused; a revocation
// since T keeps decisions before T verifying; the legacy registry key (no
// node id) is bounded by its own valid_until.
func TestVerifyDecisionChecksTheKeyAtDecidedAt(t *testing.T) {
	pub, priv, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	id := Fingerprint(pub)
	decision := func(decided time.Time) *trustfedv1.CheckInteractionResponse {
		st := &trustfedv1.DecisionStatement{KeyId: id, Decision: trustfedv1.Decision_DECISION_ALLOW,
			DecidedAt: timestamppb.New(decided), ValidUntil: timestamppb.New(decided.Add(time.Minute))}
		raw, sig, err := SignDecision(priv, st)
		if err != nil {
			t.Fatal(err)
		}
		return &trustfedv1.CheckInteractionResponse{KeyId: id, Decision: st.Decision, DecidedAt: st.DecidedAt, ValidUntil: st.ValidUntil, Statement: raw, Signature: sig}
	}
	nodeKey := func(mut func(*trustfedv1.RegistryKey)) DecisionKeys {
		k := &trustfedv1.RegistryKey{KeyId: id, PublicKey: pub, NodeId: "node-1",
			ValidFrom: timestamppb.New(t0), ValidUntil: timestamppb.New(t0.Add(24 * time.Hour))}
		if mut != nil {
			mut(k)
		}
		return DecisionKeys{id: k}
	}
	revokedAt := t0.Add(time.Hour)
	for name, tc := range map[string]struct {
		keys    DecisionKeys
		decided time.Time
		ok      bool
	}{
		"valid":                {nodeKey(nil), t0.Add(time.Minute), true},
		"unknown key":          {DecisionKeys{}, t0.Add(time.Minute), false},
		"before valid_from":    {nodeKey(nil), t0.Add(-time.Second), false},
		"at valid_until":       {nodeKey(nil), t0.Add(24 * time.Hour), false},
		"node key sans period": {nodeKey(func(k *trustfedv1.RegistryKey) { k.ValidUntil = nil }), t0.Add(time.Minute), false},
		"revoked since T, before T": {nodeKey(func(k *trustfedv1.RegistryKey) { k.RevokeTime = timestamppb.New(revokedAt) }),
			revokedAt.Add(-time.Second), true},
		"revoked since T, at T": {nodeKey(func(k *trustfedv1.RegistryKey) { k.RevokeTime = timestamppb.New(revokedAt) }),
			revokedAt, false},
		"revoked since T, after T": {nodeKey(func(k *trustfedv1.RegistryKey) { k.RevokeTime = timestamppb.New(revokedAt) }),
			revokedAt.Add(time.Second), false},
		"legacy key, unbounded": {DecisionKeys{id: {KeyId: id, PublicKey: pub}}, t0, true},
		"legacy key, retired": {DecisionKeys{id: {KeyId: id, PublicKey: pub, ValidUntil: timestamppb.New(t0)}},
			t0.Add(time.Second), false},
	} {
		_, err := VerifyDecisionWith(decision(tc.decided), tc.keys, tc.decided, VerifyOptions{AllowSingleNode: true})
		switch {
		case tc.ok && err != nil:
			t.Errorf("%s: refused: %v", name, err)
		case !tc.ok && !errors.Is(err, ErrDecisionKey):
			t.Errorf("%s: err = %v, want ErrDecisionKey", name, err)
		}
	}
}

// By default a decision one node signed alone is refused, even with a
// valid key: only a quorum certificate counts (AG-783 Scenario C).
func TestVerifyDecisionRefusesSingleNodeDecisionsByDefault(t *testing.T) {
	now := time.Now()
	nodes, keys := newTestNodes(t, 1, now.Add(-time.Hour), now.Add(time.Hour))
	st := &trustfedv1.DecisionStatement{FromOrganizationId: "a", ToOrganizationId: "b", Action: "ping", Decision: trustfedv1.Decision_DECISION_ALLOW,
		DecidedAt: timestamppb.New(now), ValidUntil: timestamppb.New(now.Add(time.Minute)), KeyId: nodes[0].rk.KeyId}
	raw, sig, err := SignDecision(nodes[0].key, st)
	if err != nil {
		t.Fatal(err)
	}
	resp := &trustfedv1.CheckInteractionResponse{Decision: st.Decision, DecidedAt: st.DecidedAt, ValidUntil: st.ValidUntil, KeyId: st.KeyId,
		Statement: raw, Signature: sig, Certification: trustfedv1.Certification_CERTIFICATION_SINGLE_NODE}
	if _, err := VerifyDecision(resp, keys, now); !errors.Is(err, ErrNotCertified) {
		t.Fatalf("default options: err = %v, want ErrNotCertified", err)
	}
	if _, err := VerifyDecisionWith(resp, keys, now, VerifyOptions{AllowSingleNode: true}); err != nil {
		t.Fatalf("AllowSingleNode: %v", err)
	}
}
