package state_test

import (
	"bytes"
	"crypto/rand"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/attestation"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// tokens drives a real, audited FSM through token commands; time moves
// only through the commands (now), never the clock.
type tokens struct {
	t     *testing.T
	a     *auditedFSM
	index uint64
	now   time.Time
}

func newTokens(t *testing.T) *tokens {
	return &tokens{t: t, a: newAuditedFSM(t, filepath.Join(t.TempDir(), "audit.db")), now: auditT0}
}

func (h *tokens) apply(cmd proto.Message, principal string) state.Result {
	h.t.Helper()
	b, err := state.Encode(cmd, state.EnvelopeMeta{Time: h.now, Principal: principal})
	require.NoError(h.t, err)
	h.index++
	return h.a.apply(h.index, b)
}

func (h *tokens) read() *state.Reader { return h.a.fsm.Store().Read() }

// bootstrap stores the cluster's first admin token, as the server does:
// valid for a day.
func (h *tokens) bootstrap() *commandv1.Token {
	h.t.Helper()
	tok := h.bootstrapToken(24 * time.Hour)
	require.NoError(h.t, h.apply(&commandv1.PutToken{Bootstrap: true, Token: tok}, "system:bootstrap").Err)
	return tok
}

// bootstrapToken is a bootstrap token valid for ttl from now (none: 0).
func (h *tokens) bootstrapToken(ttl time.Duration) *commandv1.Token {
	h.t.Helper()
	id, secret, err := attestation.NewToken(rand.Reader)
	require.NoError(h.t, err)
	hash := attestation.TokenHash(secret)
	tok := &commandv1.Token{Id: id, SecretSha256: hash[:], Role: commandv1.Role_ROLE_ADMIN, Description: "bootstrap admin token"}
	if ttl != 0 {
		tok.ExpireTime = timestamppb.New(h.now.Add(ttl))
	}
	return tok
}

// newToken is a fresh token of role for org, valid for ttl from now.
func (h *tokens) newToken(role commandv1.Role, org string, ttl time.Duration) *commandv1.Token {
	h.t.Helper()
	id, secret, err := attestation.NewToken(rand.Reader)
	require.NoError(h.t, err)
	hash := attestation.TokenHash(secret)
	return &commandv1.Token{Id: id, SecretSha256: hash[:], Role: role, OrganizationId: org,
		Description: "token for " + role.String(), ExpireTime: timestamppb.New(h.now.Add(ttl))}
}

// create stores a new token, created by the bootstrap admin.
func (h *tokens) create(role commandv1.Role, org string, ttl time.Duration) *commandv1.Token {
	h.t.Helper()
	tok := h.newToken(role, org, ttl)
	require.NoError(h.t, h.apply(&commandv1.PutToken{Token: tok}, "token:admin").Err)
	got, ok := h.read().Token(tok.Id)
	require.True(h.t, ok)
	return got
}

func ids(toks []*commandv1.Token) []string {
	out := make([]string, len(toks))
	for i, t := range toks {
		out[i] = t.Id
	}
	return out
}

func TestTokenLifecycle(t *testing.T) {
	h := newTokens(t)
	boot := h.bootstrap()
	stored, ok := h.read().Token(boot.Id)
	require.True(t, ok)
	require.Equal(t, "system:bootstrap", stored.CreatedBy)
	require.Equal(t, h.now.Add(24*time.Hour), stored.ExpireTime.AsTime(), "the bootstrap token expires like any other")
	require.NoError(t, state.TokenUsable(stored, h.now.Add(24*time.Hour-time.Second)))
	require.ErrorIs(t, state.TokenUsable(stored, h.now.Add(24*time.Hour)), state.ErrTokenExpired)

	// A governance token for an organisation that is not registered yet:
	// it is how a prospective member registers.
	gov := h.create(commandv1.Role_ROLE_GOVERNANCE, "acme-bank", time.Hour)
	_, exists := h.read().Organization("acme-bank")
	require.False(t, exists)
	require.Equal(t, "token:admin", gov.CreatedBy)
	require.Equal(t, h.now, gov.CreateTime.AsTime())
	require.Equal(t, h.index, gov.CreateIndex)
	require.Equal(t, "acme-bank", gov.OrganizationId)
	reg := h.create(commandv1.Role_ROLE_REGULATOR, "", 24*time.Hour)
	regAcme := h.create(commandv1.Role_ROLE_REGULATOR, "acme-bank", 48*time.Hour)
	admin := h.create(commandv1.Role_ROLE_ADMIN, "", state.MaxTokenTTL)

	r := h.read()
	all, next := r.ListTokens("", false, h.now, "", 100)
	require.Empty(t, next)
	require.ElementsMatch(t, []string{boot.Id, gov.Id, reg.Id, regAcme.Id, admin.Id}, ids(all))
	acme, _ := r.ListTokens("acme-bank", false, h.now, "", 100)
	require.ElementsMatch(t, []string{gov.Id, regAcme.Id}, ids(acme))
	none, _ := r.ListTokens("st-mary", true, h.now, "", 100)
	require.Empty(t, none)

	// Pages: in id order, without gaps or repeats, for both listings.
	for _, org := range []string{"", "acme-bank"} {
		want, _ := r.ListTokens(org, false, h.now, "", 100)
		var got []*commandv1.Token
		after := ""
		for {
			p, next := r.ListTokens(org, false, h.now, after, 1)
			require.LessOrEqual(t, len(p), 1)
			got = append(got, p...)
			if next == "" {
				break
			}
			after = next
		}
		require.Equal(t, ids(want), ids(got), "org %q", org)
		for i := 1; i < len(got); i++ {
			require.Less(t, got[i-1].Id, got[i].Id)
		}
	}

	// Revocation: recorded with the command's time and reason; listed only
	// with inactive tokens from then on.
	h.now = h.now.Add(time.Minute)
	require.NoError(t, h.apply(&commandv1.RevokeToken{TokenId: gov.Id, Reason: "laptop stolen"}, "token:admin").Err)
	revoked, _ := h.read().Token(gov.Id)
	require.Equal(t, h.now, revoked.RevokeTime.AsTime())
	require.Equal(t, "laptop stolen", revoked.RevokeReason)
	err := state.TokenUsable(revoked, h.now)
	require.ErrorIs(t, err, state.ErrTokenRevoked)
	require.Equal(t, "token was revoked at "+h.now.Format(time.RFC3339), err.Error())
	var se *state.Error
	require.NotErrorAs(t, err, &se, "an unusable token is an authentication failure, not a business error")
	active, _ := h.read().ListTokens("acme-bank", false, h.now, "", 100)
	require.Equal(t, []string{regAcme.Id}, ids(active))
	withInactive, _ := h.read().ListTokens("acme-bank", true, h.now, "", 100)
	require.ElementsMatch(t, []string{gov.Id, regAcme.Id}, ids(withInactive))

	res := h.apply(&commandv1.RevokeToken{TokenId: gov.Id, Reason: "again"}, "token:admin")
	require.ErrorIs(t, res.Err, state.ErrFailedPrecondition)
	requireField(t, res.Err, "token_id")
	still, _ := h.read().Token(gov.Id)
	require.Equal(t, "laptop stolen", still.RevokeReason, "a refused revocation changes nothing")

	// Expiry: usable until expire_time, not at it.
	exp := reg.ExpireTime.AsTime()
	require.NoError(t, state.TokenUsable(reg, exp.Add(-time.Nanosecond)))
	err = state.TokenUsable(reg, exp)
	require.ErrorIs(t, err, state.ErrTokenExpired)
	require.Equal(t, "token expired at "+exp.Format(time.RFC3339), err.Error())
	later, _ := h.read().ListTokens("", false, exp, "", 100)
	require.ElementsMatch(t, []string{regAcme.Id, admin.Id}, ids(later), "the bootstrap token, a day old, has expired too")
	// An expired token can still be revoked (on the record).
	h.now = exp.Add(time.Hour)
	require.NoError(t, h.apply(&commandv1.RevokeToken{TokenId: reg.Id, Reason: "left the authority"}, "token:admin").Err)
}

func requireField(t *testing.T, err error, field string) {
	t.Helper()
	var e *state.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, field, e.Field, "%v", err)
}

func TestPutTokenValidation(t *testing.T) {
	long := strings.Repeat("x", 201)
	cases := []struct {
		name   string
		mutate func(h *tokens, tok *commandv1.Token)
		boot   bool
		is     error
		field  string
	}{
		{"no id", func(_ *tokens, tok *commandv1.Token) { tok.Id = "" }, false, state.ErrInvalidArgument, "token.id"},
		{"malformed id", func(_ *tokens, tok *commandv1.Token) { tok.Id = "not-a-token" }, false, state.ErrInvalidArgument, "token.id"},
		{"short hash", func(_ *tokens, tok *commandv1.Token) { tok.SecretSha256 = tok.SecretSha256[:8] }, false, state.ErrInvalidArgument, "token.secret_sha256"},
		{"no role", func(_ *tokens, tok *commandv1.Token) { tok.Role = commandv1.Role_ROLE_UNSPECIFIED }, false, state.ErrInvalidArgument, "token.role"},
		{"unknown role", func(_ *tokens, tok *commandv1.Token) { tok.Role = 99 }, false, state.ErrInvalidArgument, "token.role"},
		{"governance without organisation", func(_ *tokens, tok *commandv1.Token) {
			tok.Role, tok.OrganizationId = commandv1.Role_ROLE_GOVERNANCE, ""
		}, false, state.ErrInvalidArgument, "token.organization_id"},
		{"governance with a malformed organisation", func(_ *tokens, tok *commandv1.Token) {
			tok.Role, tok.OrganizationId = commandv1.Role_ROLE_GOVERNANCE, "Acme Bank"
		}, false, state.ErrInvalidArgument, "token.organization_id"},
		{"regulator with a malformed organisation", func(_ *tokens, tok *commandv1.Token) {
			tok.Role, tok.OrganizationId = commandv1.Role_ROLE_REGULATOR, "-x"
		}, false, state.ErrInvalidArgument, "token.organization_id"},
		{"admin with an organisation", func(_ *tokens, tok *commandv1.Token) { tok.OrganizationId = "acme-bank" }, false, state.ErrInvalidArgument, "token.organization_id"},
		{"monitor with an organisation", func(_ *tokens, tok *commandv1.Token) {
			tok.Role, tok.OrganizationId = commandv1.Role_ROLE_MONITOR, "acme-bank"
		}, false, state.ErrInvalidArgument, "token.organization_id"},
		{"no description", func(_ *tokens, tok *commandv1.Token) { tok.Description = "" }, false, state.ErrInvalidArgument, "token.description"},
		{"long description", func(_ *tokens, tok *commandv1.Token) { tok.Description = long }, false, state.ErrInvalidArgument, "token.description"},
		{"control character in description", func(_ *tokens, tok *commandv1.Token) { tok.Description = "a\nb" }, false, state.ErrInvalidArgument, "token.description"},
		{"no expiry", func(_ *tokens, tok *commandv1.Token) { tok.ExpireTime = nil }, false, state.ErrInvalidArgument, "token.expire_time"},
		{"expiry at creation", func(h *tokens, tok *commandv1.Token) { tok.ExpireTime = timestamppb.New(h.now) }, false, state.ErrInvalidArgument, "token.expire_time"},
		{"expiry beyond 366 days", func(h *tokens, tok *commandv1.Token) {
			tok.ExpireTime = timestamppb.New(h.now.Add(state.MaxTokenTTL + time.Second))
		}, false, state.ErrInvalidArgument, "token.expire_time"},
		{"already revoked", func(h *tokens, tok *commandv1.Token) { tok.RevokeTime = timestamppb.New(h.now) }, false, state.ErrInvalidArgument, "token.revoke_time"},
		{"same secret as another", func(h *tokens, tok *commandv1.Token) {
			other, _ := h.read().ListTokens("", false, h.now, "", 1)
			tok.SecretSha256 = other[0].SecretSha256
		}, false, state.ErrAlreadyExists, "token.secret_sha256"},
		{"id taken", func(h *tokens, tok *commandv1.Token) {
			other, _ := h.read().ListTokens("", false, h.now, "", 1)
			tok.Id = other[0].Id
		}, false, state.ErrAlreadyExists, "token.id"},
		{"second bootstrap", func(*tokens, *commandv1.Token) {}, true, state.ErrFailedPrecondition, "token"},
		{"bootstrap governance token", func(_ *tokens, tok *commandv1.Token) {
			tok.Role, tok.OrganizationId = commandv1.Role_ROLE_GOVERNANCE, "acme-bank"
		}, true, state.ErrInvalidArgument, "token.role"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newTokens(t)
			h.bootstrap()
			tok := h.newToken(commandv1.Role_ROLE_ADMIN, "", time.Hour)
			tc.mutate(h, tok)
			before := h.read().TokenCount()
			res := h.apply(&commandv1.PutToken{Token: tok, Bootstrap: tc.boot}, "token:admin")
			require.ErrorIs(t, res.Err, tc.is)
			requireField(t, res.Err, tc.field)
			require.Equal(t, before, h.read().TokenCount(), "a refused token is not stored")
		})
	}

	// The limits themselves are allowed.
	h := newTokens(t)
	h.bootstrap()
	tok := h.newToken(commandv1.Role_ROLE_REGULATOR, "", state.MaxTokenTTL)
	tok.Description = strings.Repeat("é", 200)
	require.NoError(t, h.apply(&commandv1.PutToken{Token: tok}, "token:admin").Err)
}

func TestRevokeTokenValidation(t *testing.T) {
	h := newTokens(t)
	boot := h.bootstrap()
	gov := h.create(commandv1.Role_ROLE_GOVERNANCE, "acme-bank", time.Hour)
	cases := []struct {
		name  string
		cmd   *commandv1.RevokeToken
		is    error
		field string
	}{
		{"no id", &commandv1.RevokeToken{Reason: "x"}, state.ErrInvalidArgument, "token_id"},
		{"unknown", &commandv1.RevokeToken{TokenId: "000000000000", Reason: "x"}, state.ErrNotFound, "token_id"},
		{"no reason", &commandv1.RevokeToken{TokenId: gov.Id}, state.ErrInvalidArgument, "reason"},
		{"long reason", &commandv1.RevokeToken{TokenId: gov.Id, Reason: strings.Repeat("r", 501)}, state.ErrInvalidArgument, "reason"},
		{"the last admin token", &commandv1.RevokeToken{TokenId: boot.Id, Reason: "x"}, state.ErrFailedPrecondition, "token_id"},
	}
	for _, tc := range cases {
		res := h.apply(tc.cmd, "token:admin")
		require.ErrorIs(t, res.Err, tc.is, tc.name)
		requireField(t, res.Err, tc.field)
	}
	got, _ := h.read().Token(gov.Id)
	require.Nil(t, got.RevokeTime)

	// A 500-character reason is fine.
	require.NoError(t, h.apply(&commandv1.RevokeToken{TokenId: gov.Id, Reason: strings.Repeat("r", 500)}, "token:admin").Err)

	// With a second usable admin token, the bootstrap one can go; then the
	// second is the last and stays.
	second := h.create(commandv1.Role_ROLE_ADMIN, "", time.Hour)
	require.NoError(t, h.apply(&commandv1.RevokeToken{TokenId: boot.Id, Reason: "rotated"}, "token:"+second.Id).Err)
	res := h.apply(&commandv1.RevokeToken{TokenId: second.Id, Reason: "x"}, "token:"+second.Id)
	require.ErrorIs(t, res.Err, state.ErrFailedPrecondition)
	// An expired admin token does not count as another usable one.
	h2 := newTokens(t)
	boot2 := h2.bootstrap()
	h2.create(commandv1.Role_ROLE_ADMIN, "", time.Minute)
	h2.now = h2.now.Add(time.Minute)
	require.ErrorIs(t, h2.apply(&commandv1.RevokeToken{TokenId: boot2.Id, Reason: "x"}, "token:admin").Err, state.ErrFailedPrecondition)
}

// Tokens carry their new fields through a snapshot; the audit names the
// token's organisation (a revocation names only the token id) and never
// holds a secret hash.
func TestTokensSnapshotAndAudit(t *testing.T) {
	h := newTokens(t)
	h.bootstrap()
	gov := h.create(commandv1.Role_ROLE_GOVERNANCE, "acme-bank", time.Hour)
	h.create(commandv1.Role_ROLE_REGULATOR, "", time.Hour)
	require.NoError(t, h.apply(&commandv1.RevokeToken{TokenId: gov.Id, Reason: "left"}, "token:admin").Err)

	snap, err := h.a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))
	snap.Release()
	fresh := newAuditedFSM(t, filepath.Join(t.TempDir(), "fresh.db"))
	require.NoError(t, fresh.fsm.Restore(bytes.NewReader(buf.Bytes())))
	want, _ := h.read().ListTokens("", true, h.now, "", 100)
	got, _ := fresh.fsm.Store().Read().ListTokens("", true, h.now, "", 100)
	require.Len(t, got, 3)
	for i := range want {
		require.True(t, proto.Equal(want[i], got[i]), "%v != %v", want[i], got[i])
	}
	restored, _ := fresh.fsm.Store().Read().Token(gov.Id)
	require.Equal(t, "acme-bank", restored.OrganizationId)
	require.Equal(t, "left", restored.RevokeReason)
	require.NotNil(t, restored.ExpireTime)
	require.Equal(t, "token:admin", restored.CreatedBy)
	byOrg, _ := fresh.fsm.Store().Read().ListTokens("acme-bank", true, h.now, "", 100)
	require.Equal(t, []string{gov.Id}, ids(byOrg), "the organisation index is rebuilt on restore")

	var puts, revokes []*trustfedv1.AuditEntry
	for _, e := range h.a.entries() {
		switch e.Type {
		case "PUT_TOKEN":
			puts = append(puts, e)
		case "REVOKE_TOKEN":
			revokes = append(revokes, e)
		}
	}
	require.Len(t, puts, 3)
	require.Len(t, revokes, 1)
	require.Equal(t, []string{"acme-bank"}, puts[1].OrganizationIds)
	require.Empty(t, puts[2].OrganizationIds, "a federation-wide token names no organisation")
	require.Equal(t, []string{"acme-bank"}, revokes[0].OrganizationIds, "the revocation names the token's organisation")
	require.Equal(t, "token:admin", revokes[0].Principal)
	for _, e := range append(puts, revokes...) {
		require.False(t, bytes.Contains(e.Command, gov.SecretSha256), "%s holds a secret hash", e.Type)
	}
	for _, e := range puts {
		require.True(t, e.Redacted)
	}
}

// The bootstrap token's lifetime is checked like any token's; one without
// an expiry is still applied as it was (a Raft log written before bootstrap
// tokens expired replays unchanged), and never expires.
func TestBootstrapTokenLifetime(t *testing.T) {
	for _, tt := range []struct {
		name  string
		ttl   time.Duration
		field string
	}{
		{"expiry at creation", -time.Second, "token.expire_time"},
		{"beyond the longest lifetime", state.MaxTokenTTL + time.Second, "token.expire_time"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newTokens(t)
			res := h.apply(&commandv1.PutToken{Bootstrap: true, Token: h.bootstrapToken(tt.ttl)}, "system:bootstrap")
			require.ErrorIs(t, res.Err, state.ErrInvalidArgument)
			require.Contains(t, res.Err.Error(), tt.field)
			require.Zero(t, h.read().TokenCount(), "nothing stored")
		})
	}
	t.Run("an hour", func(t *testing.T) {
		h := newTokens(t)
		tok := h.bootstrapToken(time.Hour)
		require.NoError(t, h.apply(&commandv1.PutToken{Bootstrap: true, Token: tok}, "system:bootstrap").Err)
		stored, ok := h.read().Token(tok.Id)
		require.True(t, ok)
		require.NoError(t, state.TokenUsable(stored, h.now.Add(59*time.Minute)))
		require.ErrorIs(t, state.TokenUsable(stored, h.now.Add(time.Hour)), state.ErrTokenExpired)
	})
	t.Run("no expiry, from an older log", func(t *testing.T) {
		h := newTokens(t)
		tok := h.bootstrapToken(0)
		require.NoError(t, h.apply(&commandv1.PutToken{Bootstrap: true, Token: tok}, "system:bootstrap").Err)
		stored, ok := h.read().Token(tok.Id)
		require.True(t, ok)
		require.NoError(t, state.TokenUsable(stored, h.now.Add(100*365*24*time.Hour)))
	})
}
