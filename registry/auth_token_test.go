package registry

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Bearer tokens authenticate as their role and organisation until they
// expire or are revoked (checked with a clock, on every call).
func TestTokenAuthentication(t *testing.T) {
	store := state.NewStore()
	fsm := state.NewFSM(store, attestation.Verifier{}, nil)
	t0 := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	index := uint64(0)
	apply := func(cmd proto.Message) {
		t.Helper()
		b, err := state.Encode(cmd, state.EnvelopeMeta{Time: t0, Principal: "token:boot"})
		require.NoError(t, err)
		index++
		res := fsm.Apply(index, b).(state.Result)
		require.NoError(t, res.Err)
	}
	secrets := map[string]string{}
	put := func(name string, role commandv1.Role, org string, bootstrap bool) {
		t.Helper()
		id, secret, err := attestation.NewToken(strings.NewReader(strings.Repeat(name, 64)))
		require.NoError(t, err)
		hash := attestation.TokenHash(secret)
		tok := &commandv1.Token{Id: id, SecretSha256: hash[:], Role: role, OrganizationId: org, Description: name,
			ExpireTime: timestamppb.New(t0.Add(time.Hour))}
		if bootstrap {
			tok.ExpireTime = timestamppb.New(t0.Add(2 * time.Hour)) // the server's -bootstrap-token-ttl
		}
		apply(&commandv1.PutToken{Token: tok, Bootstrap: bootstrap})
		secrets[name] = secret
	}
	put("a", commandv1.Role_ROLE_ADMIN, "", true)
	put("g", commandv1.Role_ROLE_GOVERNANCE, "acme", false)
	put("r", commandv1.Role_ROLE_REGULATOR, "", false)
	put("s", commandv1.Role_ROLE_REGULATOR, "acme", false)
	put("m", commandv1.Role_ROLE_MONITOR, "", false)

	now := t0.Add(time.Minute)
	a := authenticator{store: store, clock: func() time.Time { return now }}
	auth := func(name string) (Principal, error) { return a.fromToken("Bearer " + secrets[name]) }
	for name, want := range map[string]Principal{
		"a": {Role: RoleAdmin},
		"g": {Role: RoleGovernance, Organization: "acme"},
		"r": {Role: RoleRegulator},
		"s": {Role: RoleRegulator, Organization: "acme"},
		"m": {Role: RoleMonitor},
	} {
		p, err := auth(name)
		require.NoError(t, err, name)
		require.Equal(t, want.Role, p.Role, name)
		require.Equal(t, want.Organization, p.Organization, name)
		require.True(t, strings.HasPrefix(p.ID, "token:"), p.ID)
	}

	// An hour later the other tokens have expired; the bootstrap admin
	// token lives two hours, then fails like any expired token.
	now = t0.Add(time.Hour)
	_, err := auth("g")
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.ErrorIs(t, err, state.ErrTokenExpired)
	_, err = auth("a")
	require.NoError(t, err)
	now = t0.Add(2 * time.Hour)
	_, err = auth("a")
	require.ErrorIs(t, err, ErrUnauthenticated)
	require.ErrorIs(t, err, state.ErrTokenExpired, "the bootstrap token expires")

	// Revoked: refused on the next call.
	now = t0.Add(time.Minute)
	g, _ := store.Read().TokenByHash(hashOf(secrets["g"]))
	apply(&commandv1.RevokeToken{TokenId: g.Id, Reason: "mandate ended"})
	_, err = auth("g")
	require.ErrorIs(t, err, state.ErrTokenRevoked)
	require.True(t, errors.Is(err, ErrUnauthenticated))
	_, err = a.fromToken("Bearer " + strings.Repeat("x", 10))
	require.ErrorIs(t, err, ErrUnauthenticated)
}

func hashOf(secret string) []byte {
	h := attestation.TokenHash(secret)
	return h[:]
}
