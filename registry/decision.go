package registry

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/decision"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// maxDataTypes bounds the PII types named in one check.
const maxDataTypes = 32

func validateCheckDetails(req *trustfedv1.CheckInteractionRequest) error {
	if len(req.DataTypes) > maxDataTypes {
		return state.Invalid("data_types", "at most %d entries", maxDataTypes)
	}
	for i, t := range req.DataTypes {
		if _, ok := trustfedv1.PiiType_name[int32(t)]; !ok || t == trustfedv1.PiiType_PII_TYPE_UNSPECIFIED {
			return state.Invalid(fmt.Sprintf("data_types[%d]", i), "unknown PII type %d", int32(t))
		}
	}
	if req.Value < 0 {
		return state.Invalid("value", "must not be negative")
	}
	if len(req.SessionId) > 128 {
		return state.Invalid("session_id", "is longer than 128 characters")
	}
	if req.AuthorizationId != "" {
		return state.ValidateAuthorizationID("authorization_id", req.AuthorizationId)
	}
	return nil
}

// cachedKey is the parsed signing key of the newest key id.
type cachedKey struct {
	id     string
	key    ed25519.PrivateKey
	signer *attestation.FileSigner
}

// errNoSigningKey: the cluster has not stored its signing key yet (the
// first leader does so right after it is elected).
var errNoSigningKey = errors.New("the registry signing key is not available yet")

// signDecision stamps decided_at/valid_until (the federation's freshness
// window, AG-783 TC4) and the statement. A decision that will be
// quorum-certified (audited, in a cluster with endorsed node keys:
// certifies) is signed by no node on its own: its certificate, gathered
// once its audit batch commits, is what vouches for it (certify.go).
// Otherwise this node signs it alone with its endorsed key (or, in a
// cluster that has endorsed no node key yet, the registry key).
func (s *Server) signDecision(ctx context.Context, r *state.Reader, req *trustfedv1.CheckInteractionRequest, resp *trustfedv1.CheckInteractionResponse, now time.Time) error {
	ts := new([2]timestamppb.Timestamp) // both in one allocation: timestamppb.New of each
	until := now.Add(r.FreshnessWindow())
	ts[0].Seconds, ts[0].Nanos = now.Unix(), int32(now.Nanosecond())
	ts[1].Seconds, ts[1].Nanos = until.Unix(), int32(until.Nanosecond())
	resp.DecidedAt, resp.ValidUntil = &ts[0], &ts[1]
	if s.certifies(r) {
		resp.Certification = trustfedv1.Certification_CERTIFICATION_QUORUM
		var err error
		resp.Statement, err = proto.MarshalOptions{Deterministic: true}.Marshal(decision.NewStatement(req, resp))
		if err != nil {
			return fmt.Errorf("marshal decision statement: %w", err)
		}
		s.cfg.Cosigner.Decided(resp.Statement) // its cosigner need not evaluate it again
		return nil
	}
	signer, keyID, err := s.decisionSigner(r, now)
	if err != nil {
		return err
	}
	resp.KeyId = keyID
	resp.Certification = trustfedv1.Certification_CERTIFICATION_SINGLE_NODE
	st := decision.NewStatement(req, resp)
	resp.Statement, resp.Signature, err = attestation.SignDecisionWith(ctx, signer, st)
	return err
}

// decisionSigner is the key this node signs decisions with at now. Once
// the cluster has endorsed node keys, only this node's own key, endorsed
// and valid at now, signs: a node without one answers UNAVAILABLE and never
// signs with an unendorsed key or with the registry key.
func (s *Server) decisionSigner(r *state.Reader, now time.Time) (attestation.Signer, string, error) {
	if !r.NodeKeysInForce() {
		k, err := s.currentKey(r)
		if err != nil {
			return nil, "", err
		}
		return k.signer, k.id, nil
	}
	return s.nodeSigner(r, now)
}

// nodeSigner is this node's held key that is endorsed and valid at now,
// the most recently valid first (a rotation's successor as soon as it is
// valid). UNAVAILABLE when the node holds none.
func (s *Server) nodeSigner(r *state.Reader, now time.Time) (attestation.Signer, string, error) {
	ring := s.cfg.NodeKeys
	if ring == nil {
		return nil, "", status.Errorf(codes.Unavailable, "this node (%s) has no signing key of its own", s.cfg.NodeID)
	}
	for _, k := range r.NodeSigningKeys(s.cfg.NodeID, now) {
		if own, ok := ring.Lookup(k.KeyId); ok {
			return own, k.KeyId, nil
		}
	}
	return nil, "", status.Errorf(codes.Unavailable, "this node's signing key is not endorsed: trustfed key endorse %s --from-node ADDR (node %s holds key %s)",
		s.cfg.NodeID, s.cfg.NodeID, attestation.Fingerprint(ring.Primary().Public()))
}

func (s *Server) currentKey(r *state.Reader) (*cachedKey, error) {
	newest, ok := r.NewestSigningKey()
	if !ok {
		return nil, status.Error(codes.Unavailable, errNoSigningKey.Error()+": retry shortly")
	}
	if c := s.key.Load(); c != nil && c.id == newest.KeyId {
		return c, nil
	}
	key := ed25519.NewKeyFromSeed(newest.PrivateSeed)
	signer, err := attestation.NewFileSigner(key)
	if err != nil {
		return nil, fmt.Errorf("registry key %s: %w", newest.KeyId, err)
	}
	c := &cachedKey{id: newest.KeyId, key: key, signer: signer}
	s.key.Store(c)
	return c, nil
}
