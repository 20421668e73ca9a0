package state

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Store holds the registry state. Objects it returns are shared and
// immutable: callers must not modify them (writers clone before changing).
type Store struct {
	db atomic.Pointer[memdb.MemDB]
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{}
	s.db.Store(newDB())
	return s
}

func newDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant of this package; an error is a programming bug.
		panic(fmt.Sprintf("state: invalid schema: %v", err))
	}
	return db
}

// Read returns a consistent, point-in-time view of the state.
func (s *Store) Read() *Reader {
	return &Reader{txn: s.db.Load().Txn(false)}
}

// Reader is a read-only, point-in-time view of the state.
type Reader struct {
	txn *memdb.Txn
}

// Index is the Raft index of the last registry command this view reflects.
func (r *Reader) Index() uint64 { return indexOf(r.txn) }

func indexOf(txn *memdb.Txn) uint64 { return metaOf(txn).Index }

// Organization returns the organisation with the given id.
func (r *Reader) Organization(id string) (*trustfedv1.Organization, bool) {
	return first[*trustfedv1.Organization](r.txn, tableOrganizations, "id", id)
}

// OrganizationByName returns the organisation with the given name (case-insensitive).
func (r *Reader) OrganizationByName(name string) (*trustfedv1.Organization, bool) {
	return first[*trustfedv1.Organization](r.txn, tableOrganizations, "name", name)
}

// Organizations lists organisations in id order, starting after the id
// `after`, at most limit of them; next is the last id returned when more follow.
func (r *Reader) Organizations(after string, limit int) (orgs []*trustfedv1.Organization, next string) {
	return page(r.txn, tableOrganizations, after, limit, (*trustfedv1.Organization).GetId, nil)
}

// page lists the rows of table in id order after the id after that keep
// accepts (nil: all), at most limit; next is the last id returned when more
// follow.
func page[T any](txn *memdb.Txn, table, after string, limit int, id func(T) string, keep func(T) bool) (out []T, next string) {
	it, err := txn.LowerBound(table, "id", after)
	if err != nil {
		return nil, ""
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		row := raw.(T)
		if id(row) == after || (keep != nil && !keep(row)) {
			continue
		}
		if len(out) == limit {
			return out, id(out[len(out)-1])
		}
		out = append(out, row)
	}
	return out, ""
}

// Agreement returns the agreement with the given id.
func (r *Reader) Agreement(id string) (*trustfedv1.Agreement, bool) {
	return first[*trustfedv1.Agreement](r.txn, tableAgreements, "id", id)
}

// TokenByHash returns the token whose secret hashes to hash.
func (r *Reader) TokenByHash(hash []byte) (*commandv1.Token, bool) {
	return first[*commandv1.Token](r.txn, tableTokens, "hash", hash)
}

// TokenCount is the number of tokens stored.
func (r *Reader) TokenCount() int { return count(r.txn, tableTokens) }

func first[T any](txn *memdb.Txn, table, index string, args ...any) (T, bool) {
	var zero T
	raw, err := txn.First(table, index, args...)
	if err != nil || raw == nil {
		return zero, false
	}
	return raw.(T), true
}

func count(txn *memdb.Txn, table string) int {
	it, err := txn.Get(table, "id")
	if err != nil {
		return 0
	}
	n := 0
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n++
	}
	return n
}

// OrganizationByKey returns the organisation registered with the key of that fingerprint.
func (r *Reader) OrganizationByKey(fingerprint string) (*trustfedv1.Organization, bool) {
	return first[*trustfedv1.Organization](r.txn, tableOrganizations, "key", fingerprint)
}

// Issuer returns an issuer (accredited or withdrawn).
func (r *Reader) Issuer(id string) (*trustfedv1.Issuer, bool) {
	return first[*trustfedv1.Issuer](r.txn, tableIssuers, "id", id)
}

// Issuers lists every issuer in id order.
func (r *Reader) Issuers() []*trustfedv1.Issuer {
	it, err := r.txn.Get(tableIssuers, "id")
	if err != nil {
		return nil
	}
	var out []*trustfedv1.Issuer
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*trustfedv1.Issuer))
	}
	return out
}

// PassportRevoked reports whether a passport serial was revoked.
func (r *Reader) PassportRevoked(serial string) bool {
	_, ok := first[*commandv1.RevokedPassport](r.txn, tableRevoked, "id", serial)
	return ok
}

// Default federation policy (AG-783 TC4, TC7).
const (
	DefaultOnboardingCapLevel = 2
	DefaultOnboardingPeriod   = 30 * 24 * time.Hour
	DefaultFreshnessWindow    = 5 * time.Minute
	MaxFreshnessWindow        = 10 * time.Minute
)

// FederationPolicy returns the federation policy (defaults if never set).
func (r *Reader) FederationPolicy() *trustfedv1.FederationPolicy {
	if p, ok := first[*trustfedv1.FederationPolicy](r.txn, tablePolicy, "id"); ok {
		return p
	}
	return &trustfedv1.FederationPolicy{
		OnboardingCapLevel:     DefaultOnboardingCapLevel,
		OnboardingPeriod:       durationpb.New(DefaultOnboardingPeriod),
		FreshnessWindow:        durationpb.New(DefaultFreshnessWindow),
		AdminApprovalsRequired: DefaultAdminApprovals,
	}
}

// FreshnessWindow is how long a decision stays valid.
func (r *Reader) FreshnessWindow() time.Duration {
	if d := r.FederationPolicy().GetFreshnessWindow(); d != nil {
		return d.AsDuration()
	}
	return DefaultFreshnessWindow
}

// NewestSigningKey returns the most recently stored decision-signing key
// (the one new decisions are signed with) without allocating: it is on the
// check path. Only a key whose seed the state still holds can sign: none
// once the seed was retired (RETIRE_REGISTRY_SEED) or in a cluster
// bootstrapped with a node key.
func (r *Reader) NewestSigningKey() (*commandv1.SigningKey, bool) {
	it, err := r.txn.Get(tableSigningKeys, "id")
	if err != nil {
		return nil, false
	}
	var newest *commandv1.SigningKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		if k := raw.(*commandv1.SigningKey); len(k.PrivateSeed) == ed25519.SeedSize && (newest == nil || k.CreateIndex > newest.CreateIndex) {
			newest = k
		}
	}
	return newest, newest != nil
}

// SigningKeys lists the registry's decision-signing keys, oldest first.
func (r *Reader) SigningKeys() []*commandv1.SigningKey {
	it, err := r.txn.Get(tableSigningKeys, "id")
	if err != nil {
		return nil
	}
	var out []*commandv1.SigningKey
	for raw := it.Next(); raw != nil; raw = it.Next() {
		out = append(out, raw.(*commandv1.SigningKey))
	}
	slices.SortFunc(out, func(a, b *commandv1.SigningKey) int { return cmp.Compare(a.CreateIndex, b.CreateIndex) })
	return out
}

// copyOrganization is a new row with the fields of o, sharing their values
// (sub-messages, lists, bytes) with it: a writer that replaces top-level
// fields of a stored organisation copies it so, and must never change what
// a field of the copy holds (rows are immutable; proto.CloneOf is the deep
// copy for a writer that does). It encodes as o does, unknown fields
// included, and costs one allocation where proto.CloneOf costs one per
// sub-message and list (TestCopyOrganization fails when a field is added
// to Organization and not here).
func copyOrganization(o *trustfedv1.Organization) *trustfedv1.Organization {
	c := &trustfedv1.Organization{
		Id:                       o.Id,
		Name:                     o.Name,
		DeclaredLevel:            o.DeclaredLevel,
		Status:                   o.Status,
		CreateTime:               o.CreateTime,
		UpdateTime:               o.UpdateTime,
		CreateIndex:              o.CreateIndex,
		ModifyIndex:              o.ModifyIndex,
		PublicKey:                o.PublicKey,
		PublicKeyFingerprint:     o.PublicKeyFingerprint,
		Jurisdiction:             o.Jurisdiction,
		ControlProfile:           o.ControlProfile,
		NotificationEndpoints:    o.NotificationEndpoints,
		Passport:                 o.Passport,
		PassportHistory:          o.PassportHistory,
		ApproveTime:              o.ApproveTime,
		OnboardingUntil:          o.OnboardingUntil,
		OnboardingOverride:       o.OnboardingOverride,
		WebhookCaCertificatesPem: o.WebhookCaCertificatesPem,
	}
	if u := o.ProtoReflect().GetUnknown(); len(u) > 0 {
		c.ProtoReflect().SetUnknown(u)
	}
	return c
}
