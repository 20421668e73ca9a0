package registry

import (
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
	id  string
	key ed25519.PrivateKey
}

// errNoSigningKey: the cluster has not stored its signing key yet (the
// first leader does so right after it is elected).
var errNoSigningKey = errors.New("the registry signing key is not available yet")

// signDecision stamps decided_at/valid_until (the federation's freshness
// window, AG-783 TC4) and signs the decision statement with the registry key.
func (s *Server) signDecision(r *state.Reader, req *trustfedv1.CheckInteractionRequest, resp *trustfedv1.CheckInteractionResponse, now time.Time) error {
	k, err := s.currentKey(r)
	if err != nil {
		return err
	}
	resp.DecidedAt = timestamppb.New(now)
	resp.ValidUntil = timestamppb.New(now.Add(r.FreshnessWindow()))
	resp.KeyId = k.id
	st := decision.NewStatement(req, resp)
	resp.Statement, resp.Signature, err = attestation.SignDecision(k.key, st)
	return err
}

func (s *Server) currentKey(r *state.Reader) (*cachedKey, error) {
	newest, ok := r.NewestSigningKey()
	if !ok {
		return nil, status.Error(codes.Unavailable, errNoSigningKey.Error()+": retry shortly")
	}
	if c := s.key.Load(); c != nil && c.id == newest.KeyId {
		return c, nil
	}
	c := &cachedKey{id: newest.KeyId, key: ed25519.NewKeyFromSeed(newest.PrivateSeed)}
	s.key.Store(c)
	return c, nil
}
