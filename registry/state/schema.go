package state

import (
	"encoding/binary"
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// Table names.
const (
	tableOrganizations  = "organizations"
	tableAgreements     = "agreements"
	tableTokens         = "tokens"
	tableRequests       = "requests"
	tableMeta           = "meta"
	tableIssuers        = "issuers"
	tableRevoked        = "revoked_passports"
	tablePolicy         = "policy"
	tableSigningKeys    = "signing_keys"
	tableAuthorizations = "authorizations"
	tableAdmins         = "admins"
	tableAdminChanges   = "admin_changes"
	tableEdges          = "edges"
	tableSessions       = "sessions"
	tableCascades       = "cascades"
	tableTargets        = "event_targets"
	tableCheckpoints    = "checkpoints"
)

// metaRow, the meta table's one row, holds the Raft index the state
// reflects and the LtHash of its replicated rows (commitment.go), written
// in the same transaction as every change so a read transaction sees them
// consistently. It is not itself replicated (the meta table is in no
// snapshot): each replica derives it. A stored row is never changed.
type metaRow struct {
	Key   string
	Index uint64
	Sum   ltHash
}

const metaKeyIndex = "index"

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableOrganizations: {
			Name: tableOrganizations,
			Indexes: map[string]*memdb.IndexSchema{
				"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"name":   {Name: "name", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name", Lowercase: true}},
				"key":    {Name: "key", Unique: true, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "PublicKeyFingerprint"}},
				"issuer": {Name: "issuer", AllowMissing: true, Indexer: passportIssuerIndex{}},
				// The sweeper's (sweep.go): organisations by passport expiry.
				"passport_expire": {Name: "passport_expire", AllowMissing: true, Indexer: passportExpireIndex{}},
			},
		},
		tableIssuers: {
			Name: tableIssuers,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		},
		tableRevoked: {
			Name: tableRevoked,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Serial"}},
			},
		},
		tableAuthorizations: {
			Name: tableAuthorizations,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		},
		tableAdmins: {
			Name: tableAdmins,
			Indexes: map[string]*memdb.IndexSchema{
				"id":  {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"key": {Name: "key", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "PublicKeyFingerprint"}},
			},
		},
		tableAdminChanges: {
			Name: tableAdminChanges,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
			},
		},
		tableEdges: {
			Name: tableEdges,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: edgeIndex{}},
			},
		},
		tableSessions: {
			Name: tableSessions,
			Indexes: map[string]*memdb.IndexSchema{
				"id":    {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"party": {Name: "party", Indexer: sessionPartyIndex{}},
				"open": {Name: "open", Indexer: &memdb.ConditionalIndex{Conditional: func(o any) (bool, error) {
					return o.(*trustfedv1.Session).Status == trustfedv1.SessionStatus_SESSION_STATUS_OPEN, nil
				}}},
				// The sweeper's (sweep.go): open sessions by expiry.
				"open_expire": {Name: "open_expire", AllowMissing: true, Indexer: openSessionExpireIndex{}},
			},
		},
		tableCascades: {
			Name: tableCascades,
			Indexes: map[string]*memdb.IndexSchema{
				"id":     {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"create": {Name: "create", Indexer: &memdb.UintFieldIndex{Field: "CreateIndex"}},
				"incomplete": {Name: "incomplete", Indexer: &memdb.ConditionalIndex{Conditional: func(o any) (bool, error) {
					return o.(*trustfedv1.Cascade).CompleteTime == nil, nil
				}}},
			},
		},
		tableTargets: {
			Name: tableTargets,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: targetIndex{}},
			},
		},
		tableCheckpoints: {
			Name: tableCheckpoints,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.UintFieldIndex{Field: "TreeSize"}},
			},
		},
		tableSigningKeys: {
			Name: tableSigningKeys,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "KeyId"}},
			},
		},
		tablePolicy: {
			Name: tablePolicy,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.ConditionalIndex{Conditional: func(any) (bool, error) { return true, nil }}},
			},
		},
		tableAgreements: {
			Name: tableAgreements,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				// Active agreements are found by party through the edges
				// table instead (agreements.go, "Finding agreements").
				"inactive": {Name: "inactive", AllowMissing: true, Indexer: inactivePairIndex{}},
				// The sweeper's (sweep.go): active agreements by end date, and
				// by the time they start to be evaluated.
				"active_end":   {Name: "active_end", AllowMissing: true, Indexer: activeEndIndex{}},
				"active_start": {Name: "active_start", AllowMissing: true, Indexer: activeStartIndex{}},
			},
		},
		tableTokens: {
			Name: tableTokens,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Id"}},
				"hash": {Name: "hash", Unique: true, Indexer: tokenHashIndex{}},
				"org":  {Name: "org", AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "OrganizationId"}},
			},
		},
		tableRequests: {
			Name: tableRequests,
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "RequestId"}},
				"time": {Name: "time", Indexer: requestTimeIndex{}},
			},
		},
		tableMemberNodes: memberNodesTable(),
		tableNodeKeys:    nodeKeysTable(),
		tableUsedNonces:  usedNoncesTable(),
		tableMeta: {
			Name: tableMeta,
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}}
}

// passportIssuerIndex indexes organisations by the issuer of their passport.
type passportIssuerIndex struct{}

func (passportIssuerIndex) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(*trustfedv1.Organization)
	if !ok {
		return false, nil, fmt.Errorf("passport issuer index: unexpected %T", raw)
	}
	if o.GetPassport().GetIssuerId() == "" {
		return false, nil, nil
	}
	return true, []byte(o.Passport.IssuerId + "\x00"), nil
}

func (passportIssuerIndex) FromArgs(args ...any) ([]byte, error) {
	return stringArg("passport issuer", args)
}

// inactivePairIndex indexes an agreement that is not active (pending or
// terminated) under each direction of its pair, "a\x00b\x00" and
// "b\x00a\x00": one argument (an organisation) finds all of its inactive
// agreements, two (an organisation and a partner) those of the pair. An
// active agreement has no entry: its two edge rows find it (agreements.go).
type inactivePairIndex struct{}

func (inactivePairIndex) FromObject(raw any) (bool, [][]byte, error) {
	a, ok := raw.(*trustfedv1.Agreement)
	if !ok {
		return false, nil, fmt.Errorf("inactive agreement index: unexpected %T", raw)
	}
	if a.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
		return false, nil, nil
	}
	return true, [][]byte{
		[]byte(a.OrganizationAId + "\x00" + a.OrganizationBId + "\x00"),
		[]byte(a.OrganizationBId + "\x00" + a.OrganizationAId + "\x00"),
	}, nil
}

func (inactivePairIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 && len(args) != 2 {
		return nil, fmt.Errorf("inactive agreement index: want 1 or 2 args, got %d", len(args))
	}
	var b []byte
	for _, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("inactive agreement index: args must be strings")
		}
		b = append(append(b, s...), 0)
	}
	return b, nil
}

// tokenHashIndex indexes tokens by the SHA-256 of their secret.
type tokenHashIndex struct{}

func (tokenHashIndex) FromObject(raw any) (bool, []byte, error) {
	t, ok := raw.(*commandv1.Token)
	if !ok {
		return false, nil, fmt.Errorf("token hash index: unexpected %T", raw)
	}
	if len(t.SecretSha256) == 0 {
		return false, nil, nil
	}
	return true, append([]byte(nil), t.SecretSha256...), nil
}

func (tokenHashIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("token hash index: want 1 arg, got %d", len(args))
	}
	b, ok := args[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("token hash index: arg must be []byte")
	}
	return b, nil
}

// requestTimeIndex orders applied requests by their leader-stamped time.
type requestTimeIndex struct{}

func timeKey(nanos int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(nanos))
	return b[:]
}

func (requestTimeIndex) FromObject(raw any) (bool, []byte, error) {
	r, ok := raw.(*commandv1.AppliedRequest)
	if !ok {
		return false, nil, fmt.Errorf("request time index: unexpected %T", raw)
	}
	// Room for what memdb appends to a key of a non-unique index (the
	// primary key: the id and its terminating zero), so that append does
	// not copy the key.
	b := make([]byte, 8, 8+len(r.RequestId)+1)
	binary.BigEndian.PutUint64(b, uint64(r.GetTime().AsTime().UnixNano()))
	return true, b, nil
}

func (requestTimeIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("request time index: want 1 arg, got %d", len(args))
	}
	n, ok := args[0].(int64)
	if !ok {
		return nil, fmt.Errorf("request time index: arg must be int64 nanoseconds")
	}
	return timeKey(n), nil
}

func stringArg(index string, args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s index: want 1 arg, got %d", index, len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("%s index: arg must be a string", index)
	}
	return []byte(s + "\x00"), nil
}
