package attestation

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// Decision verification errors.
var (
	ErrDecisionExpired  = errors.New("decision is past its valid_until")
	ErrDecisionKey      = errors.New("decision signed with an unknown key")
	ErrDecisionMismatch = errors.New("decision answer does not match its signed statement")
)

// CapsSigned reports whether st carries the caps on the parties' levels.
// Every level has at least its declared cap, so a statement without any
// was signed before the caps were part of it: its answer's caps are not
// covered by the signature.
func CapsSigned(st *trustfedv1.DecisionStatement) bool {
	return len(st.GetFromLevelCaps()) > 0 || len(st.GetToLevelCaps()) > 0
}

func equalCaps(a, b []*trustfedv1.LevelCap) bool {
	return slices.EqualFunc(a, b, func(x, y *trustfedv1.LevelCap) bool { return proto.Equal(x, y) })
}

// SignDecision serializes st and signs it with key.
func SignDecision(key ed25519.PrivateKey, st *trustfedv1.DecisionStatement) (statement, sig []byte, err error) {
	statement, err = proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal decision statement: %w", err)
	}
	return statement, Sign(key, PurposeDecision, statement), nil
}

// SignDecisionWith serializes st and signs it with a node's Signer.
func SignDecisionWith(ctx context.Context, s Signer, st *trustfedv1.DecisionStatement) (statement, sig []byte, err error) {
	statement, err = proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal decision statement: %w", err)
	}
	sig, err = s.Sign(ctx, PurposeDecision, statement)
	if err != nil {
		return nil, nil, fmt.Errorf("sign decision: %w", err)
	}
	return statement, sig, nil
}

// DecisionKeys are the published registry keys (GET /v1/keys) by key id,
// with their node and validity: the key history VerifyDecision checks
// signatures against.
type DecisionKeys map[string]*trustfedv1.RegistryKey

// VerifyOptions relax or tighten VerifyDecisionWith.
type VerifyOptions struct {
	// AllowSingleNode accepts a decision one registry node vouches for
	// alone (CERTIFICATION_SINGLE_NODE: a server run with
	// -unaudited-decisions, or a cluster whose nodes have no endorsed keys
	// yet). Off by default: a single node, compromised or with a tampered
	// disk, could forge such a decision (AG-783 Scenario C).
	AllowSingleNode bool
	// MinSignatures raises the number of distinct node signatures a
	// certificate needs above the majority of the nodes keys lists (pin it
	// to your cluster's majority if you do not want to rely on the key list
	// alone).
	MinSignatures int
}

// VerifyDecision is VerifyDecisionWith with the default options: only a
// decision certified by a quorum of registry nodes passes.
func VerifyDecision(resp *trustfedv1.CheckInteractionResponse, keys DecisionKeys, now time.Time) (*trustfedv1.DecisionStatement, error) {
	return VerifyDecisionWith(resp, keys, now, VerifyOptions{})
}

// VerifyDecisionWith checks a CheckInteraction answer offline and returns
// its verified statement. A certified decision (the default kind) needs its
// statement in the batch the certificate's head commits to and signatures
// over that head by a quorum of distinct registry nodes (a majority of the
// nodes with a key in keys valid at decided_at, or opts.MinSignatures if
// more), each with its own endorsed key valid (not expired, not revoked) at
// decided_at. A single-node decision is refused unless
// opts.AllowSingleNode; its signature must then be by a published key
// valid at decided_at. Either way the answer's fields must be the
// statement's (the caps on each party's level included, when the statement
// carries them), and now must be before valid_until (AG-783 TC4).
func VerifyDecisionWith(resp *trustfedv1.CheckInteractionResponse, keys DecisionKeys, now time.Time, opts VerifyOptions) (*trustfedv1.DecisionStatement, error) {
	var st trustfedv1.DecisionStatement
	if err := proto.Unmarshal(resp.GetStatement(), &st); err != nil {
		return nil, fmt.Errorf("%w: statement does not parse: %v", ErrDecisionMismatch, err)
	}
	if st.DecidedAt == nil {
		return nil, fmt.Errorf("%w: the statement has no decided_at", ErrDecisionMismatch)
	}
	decidedAt := st.DecidedAt.AsTime()
	if cert := resp.GetCertificate(); cert != nil {
		need := max(Quorum(keys, decidedAt), opts.MinSignatures)
		head, err := VerifyCertificate(resp.GetStatement(), cert, keys, decidedAt, need)
		if err != nil {
			return nil, err
		}
		if st.Index >= head.LogIndex {
			return nil, fmt.Errorf("%w: decided at index %d, logged at %d", ErrDecisionMismatch, st.Index, head.LogIndex)
		}
	} else {
		if !opts.AllowSingleNode {
			return nil, fmt.Errorf("%w: only node %q vouches for it (single-node decision: unaudited, or the cluster's nodes have no endorsed keys)", ErrNotCertified, keys[resp.GetKeyId()].GetNodeId())
		}
		k, ok := keys[resp.GetKeyId()]
		if !ok || k == nil {
			return nil, fmt.Errorf("%w: %q", ErrDecisionKey, resp.GetKeyId())
		}
		if err := Verify(k.PublicKey, PurposeDecision, resp.GetStatement(), resp.GetSignature()); err != nil {
			return nil, err
		}
		if err := CheckRegistryKeyAt(k, decidedAt); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDecisionKey, err)
		}
	}
	switch {
	case st.KeyId != resp.KeyId,
		st.Decision != resp.Decision,
		st.EffectiveLevel != resp.EffectiveLevel,
		st.FromLevel != resp.FromLevel,
		st.ToLevel != resp.ToLevel,
		st.RequiredLevel != resp.RequiredLevel,
		st.AgreementId != resp.AgreementId,
		st.AuthorizationId != resp.AuthorizationId,
		st.RequiresDualAuthorization != resp.RequiresDualAuthorization,
		st.AuthorizationUseIndex != resp.AuthorizationUseIndex,
		st.Index != resp.GetMeta().GetIndex(),
		!proto.Equal(st.DecidedAt, resp.DecidedAt),
		!proto.Equal(st.ValidUntil, resp.ValidUntil),
		!proto.Equal(st.Controls, resp.Controls),
		len(st.Reasons) != len(resp.Reasons):
		return nil, ErrDecisionMismatch
	}
	for i := range st.Reasons {
		if !proto.Equal(st.Reasons[i], resp.Reasons[i]) {
			return nil, ErrDecisionMismatch
		}
	}
	if CapsSigned(&st) && (!equalCaps(st.FromLevelCaps, resp.FromLevelCaps) || !equalCaps(st.ToLevelCaps, resp.ToLevelCaps)) {
		return nil, fmt.Errorf("%w: the caps on the parties' levels differ from the signed ones", ErrDecisionMismatch)
	}
	if st.ValidUntil == nil || !now.Before(st.ValidUntil.AsTime()) {
		return nil, fmt.Errorf("%w (%s)", ErrDecisionExpired, st.GetValidUntil().AsTime().UTC().Format(time.RFC3339))
	}
	return &st, nil
}
