package state

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/trustfed/trustfed/ids"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Member nodes are an organisation's gateways: each is enrolled with its
// ed25519 public key by a signature of its organisation's registered key,
// proves it holds the key by answering a registry challenge, and gets
// short-lived client certificates for that key. The state keeps the
// enrolled nodes (table member_nodes, by organisation and node id) and the
// challenge nonces already answered (table used_nonces, until the challenge
// expires), so that each challenge yields one certificate on every replica.

// Signature purposes of member nodes (attestation.PurposeMemberNode and
// attestation.PurposeMemberChallenge).
const (
	PurposeMemberNode      = "member-node"
	PurposeMemberChallenge = "member-challenge"
)

// Limits of member node commands.
const (
	// MaxEnrolmentSkew is how far an enrolment's sign_time may be from the
	// time it is applied.
	MaxEnrolmentSkew = 10 * time.Minute
	// MemberNonceSize is the size of a challenge nonce.
	MemberNonceSize = 32
	// MaxMemberChallengeTTL bounds how long after it is answered a
	// challenge's nonce is remembered (challenges live 2 minutes).
	MaxMemberChallengeTTL = 10 * time.Minute
	maxMemberRemoveReason = 500
	maxCertificateSerial  = 64
)

const (
	tableMemberNodes = "member_nodes"
	tableUsedNonces  = "used_nonces"
)

func memberNodesTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableMemberNodes,
		Indexes: map[string]*memdb.IndexSchema{
			"id":  {Name: "id", Unique: true, Indexer: memberNodeIndex{}},
			"key": {Name: "key", Unique: true, Indexer: bytesIndex[*trustfedv1.MemberNode]{name: "member key", get: (*trustfedv1.MemberNode).GetPublicKey}},
		},
	}
}

func usedNoncesTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableUsedNonces,
		Indexes: map[string]*memdb.IndexSchema{
			"id":     {Name: "id", Unique: true, Indexer: bytesIndex[*commandv1.UsedNonce]{name: "nonce", get: (*commandv1.UsedNonce).GetNonce}},
			"expire": {Name: "expire", Indexer: nonceExpireIndex{}},
		},
	}
}

// memberNodeIndex indexes member nodes by organisation then node id; a
// prefix of one argument finds an organisation's nodes.
type memberNodeIndex struct{}

func (memberNodeIndex) FromObject(raw any) (bool, []byte, error) {
	n, ok := raw.(*trustfedv1.MemberNode)
	if !ok {
		return false, nil, fmt.Errorf("member node index: unexpected %T", raw)
	}
	return true, []byte(n.OrganizationId + "\x00" + n.NodeId + "\x00"), nil
}

func (memberNodeIndex) FromArgs(args ...any) ([]byte, error) {
	var b []byte
	for _, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("member node index: args must be strings")
		}
		b = append(append(b, s...), 0)
	}
	return b, nil
}

func (x memberNodeIndex) PrefixFromArgs(args ...any) ([]byte, error) { return x.FromArgs(args...) }

// bytesIndex indexes rows by a bytes field.
type bytesIndex[T any] struct {
	name string
	get  func(T) []byte
}

func (x bytesIndex[T]) FromObject(raw any) (bool, []byte, error) {
	row, ok := raw.(T)
	if !ok {
		return false, nil, fmt.Errorf("%s index: unexpected %T", x.name, raw)
	}
	b := x.get(row)
	if len(b) == 0 {
		return false, nil, nil
	}
	return true, bytes.Clone(b), nil
}

func (x bytesIndex[T]) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("%s index: want 1 arg, got %d", x.name, len(args))
	}
	b, ok := args[0].([]byte)
	if !ok {
		return nil, fmt.Errorf("%s index: arg must be []byte", x.name)
	}
	return b, nil
}

// nonceExpireIndex orders used nonces by expiry.
type nonceExpireIndex struct{}

func (nonceExpireIndex) FromObject(raw any) (bool, []byte, error) {
	n, ok := raw.(*commandv1.UsedNonce)
	if !ok {
		return false, nil, fmt.Errorf("nonce expire index: unexpected %T", raw)
	}
	return true, timeKey(n.GetExpireTime().AsTime().UnixNano()), nil
}

func (nonceExpireIndex) FromArgs(args ...any) ([]byte, error) {
	return requestTimeIndex{}.FromArgs(args...)
}

// ValidateMemberNodeID checks a member node id: ^[a-z0-9][a-z0-9-]{0,62}$.
func ValidateMemberNodeID(field, id string) error {
	if id == "" {
		return Invalid(field, "is required")
	}
	if !ids.Node.Match(id) {
		return Invalid(field, "%q is not a node id (want %s)", truncate(id), ids.Node)
	}
	return nil
}

// ValidateMemberRemoval checks a removal's fields (not the state).
func ValidateMemberRemoval(c *commandv1.RemoveMemberNode) error {
	if err := ValidateOrganizationID("organization_id", c.GetOrganizationId()); err != nil {
		return err
	}
	if err := ValidateMemberNodeID("node_id", c.GetNodeId()); err != nil {
		return err
	}
	return validateText("reason", c.GetReason(), maxMemberRemoveReason)
}

// ActiveOrganization returns the organisation id if it exists and is
// ACTIVE: NotFound, or FailedPrecondition naming its status, otherwise.
func activeOrganization(r *Reader, field, id string) (*trustfedv1.Organization, error) {
	org, ok := r.Organization(id)
	if !ok {
		return nil, NotFound(field, "organization %q does not exist", id)
	}
	if org.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
		return nil, FailedPrecondition(field, "organization %q is %s", id, OrganizationStatusName(org.Status))
	}
	return org, nil
}

// OrganizationStatusName is a status without its enum prefix: "ACTIVE".
func OrganizationStatusName(s trustfedv1.OrganizationStatus) string {
	return strings.TrimPrefix(s.String(), "ORGANIZATION_STATUS_")
}

// CheckMemberEnrolment verifies a signed enrolment (the serialized
// trustfed.v1.MemberNodeEnrolment and its organisation's signature) against
// the state r at time now, and returns the member node it would enrol
// (ACTIVE, without times). The leader runs it before proposing; every
// replica runs it again when applying, at the command's time.
func CheckMemberEnrolment(r *Reader, v Verifier, enrolment, sig []byte, now time.Time) (*trustfedv1.MemberNode, error) {
	if len(enrolment) == 0 {
		return nil, Invalid("enrolment", "is required")
	}
	var e trustfedv1.MemberNodeEnrolment
	if err := proto.Unmarshal(enrolment, &e); err != nil {
		return nil, Invalid("enrolment", "is not a serialized trustfed.v1.MemberNodeEnrolment: %v", err)
	}
	if err := ValidateOrganizationID("enrolment.organization_id", e.OrganizationId); err != nil {
		return nil, err
	}
	if err := ValidateMemberNodeID("enrolment.node_id", e.NodeId); err != nil {
		return nil, err
	}
	fp, ok := v.Fingerprint(e.PublicKey)
	if !ok {
		return nil, Invalid("enrolment.public_key", "must be a raw 32-byte ed25519 public key, got %d bytes", len(e.PublicKey))
	}
	if e.SignTime == nil {
		return nil, Invalid("enrolment.sign_time", "is required")
	}
	if err := e.SignTime.CheckValid(); err != nil {
		return nil, Invalid("enrolment.sign_time", "%v", err)
	}
	if skew := e.SignTime.AsTime().Sub(now); skew > MaxEnrolmentSkew || skew < -MaxEnrolmentSkew {
		return nil, Invalid("enrolment.sign_time", "%s is more than %v from the registry's time %s",
			e.SignTime.AsTime().UTC().Format(time.RFC3339), MaxEnrolmentSkew, now.UTC().Format(time.RFC3339))
	}
	if len(sig) == 0 {
		return nil, Invalid("signature", "is required")
	}
	org, err := activeOrganization(r, "enrolment.organization_id", e.OrganizationId)
	if err != nil {
		return nil, err
	}
	if err := v.VerifySignature(org.PublicKey, PurposeMemberNode, enrolment, sig); err != nil {
		return nil, Invalid("signature", "does not verify with the key registered for %q over the enrolment: %v", e.OrganizationId, err)
	}
	if cur, ok := r.MemberNode(e.OrganizationId, e.NodeId); ok && cur.Status == trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE {
		return nil, AlreadyExists("enrolment.node_id", "member node %q of %q is already enrolled (remove it first to enrol a new key)", e.NodeId, e.OrganizationId)
	}
	if other, ok := r.memberNodeByKey(e.PublicKey); ok {
		if other.OrganizationId == e.OrganizationId && other.NodeId == e.NodeId {
			return nil, AlreadyExists("enrolment.public_key", "key %s was this removed node's key: a re-enrolled node needs a new key", fp)
		}
		return nil, AlreadyExists("enrolment.public_key", "key %s is already enrolled for member node %q of %q", fp, other.NodeId, other.OrganizationId)
	}
	return &trustfedv1.MemberNode{
		OrganizationId: e.OrganizationId,
		NodeId:         e.NodeId,
		PublicKey:      e.PublicKey,
		Status:         trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE,
	}, nil
}

func applyEnrolMemberNode(tx *memdb.Txn, env *commandv1.Envelope, index uint64, v Verifier) error {
	var c commandv1.EnrolMemberNode
	if err := decode(env, &c); err != nil {
		return err
	}
	n, err := CheckMemberEnrolment(&Reader{txn: tx}, v, c.Enrolment, c.Signature, env.Time.AsTime())
	if err != nil {
		return err
	}
	if old, ok := first[*trustfedv1.MemberNode](tx, tableMemberNodes, "id", n.OrganizationId, n.NodeId); ok {
		// Re-enrolment of a removed node: its old key leaves the key index.
		if err := tx.Delete(tableMemberNodes, old); err != nil {
			return err
		}
	}
	n.EnrolTime, n.EnrolIndex = stamp(env), index
	return tx.Insert(tableMemberNodes, n)
}

func applyRemoveMemberNode(tx *memdb.Txn, env *commandv1.Envelope, _ uint64, _ Verifier) error {
	var c commandv1.RemoveMemberNode
	if err := decode(env, &c); err != nil {
		return err
	}
	if err := ValidateMemberRemoval(&c); err != nil {
		return err
	}
	cur, ok := first[*trustfedv1.MemberNode](tx, tableMemberNodes, "id", c.OrganizationId, c.NodeId)
	if !ok {
		return NotFound("node_id", "member node %q of %q is not enrolled", c.NodeId, c.OrganizationId)
	}
	if cur.Status == trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_REMOVED {
		return FailedPrecondition("node_id", "member node %q of %q was already removed", c.NodeId, c.OrganizationId)
	}
	n := proto.CloneOf(cur)
	n.Status = trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_REMOVED
	n.RemoveTime, n.RemoveReason = stamp(env), c.Reason
	return tx.Insert(tableMemberNodes, n)
}

// ValidateMemberCertificate checks an ISSUE_MEMBER_CERTIFICATE command's
// fields at time now (not the state).
func ValidateMemberCertificate(c *commandv1.IssueMemberCertificate, now time.Time) error {
	if err := ValidateOrganizationID("organization_id", c.GetOrganizationId()); err != nil {
		return err
	}
	if err := ValidateMemberNodeID("node_id", c.GetNodeId()); err != nil {
		return err
	}
	if len(c.GetNonce()) != MemberNonceSize {
		return Invalid("nonce", "must be %d bytes, got %d", MemberNonceSize, len(c.GetNonce()))
	}
	if err := validTime("nonce_expire_time", c.GetNonceExpireTime()); err != nil {
		return err
	}
	exp := c.NonceExpireTime.AsTime()
	if !exp.After(now) {
		return FailedPrecondition("nonce_expire_time", "the challenge expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if exp.Sub(now) > MaxMemberChallengeTTL {
		return Invalid("nonce_expire_time", "%s is more than %v ahead", exp.UTC().Format(time.RFC3339), MaxMemberChallengeTTL)
	}
	if s := c.GetSerial(); s == "" || len(s) > maxCertificateSerial || !ids.Serial.Match(s) {
		return Invalid("serial", "must be 1..%d lower-case hex digits", maxCertificateSerial)
	}
	if err := validTime("not_after", c.GetNotAfter()); err != nil {
		return err
	}
	if !c.NotAfter.AsTime().After(now) {
		return Invalid("not_after", "%s is not after the issue time", c.NotAfter.AsTime().UTC().Format(time.RFC3339))
	}
	return nil
}

func validTime(field string, ts *timestamppb.Timestamp) error {
	if ts == nil {
		return Invalid(field, "is required")
	}
	if err := ts.CheckValid(); err != nil {
		return Invalid(field, "%v", err)
	}
	return nil
}

// CheckMemberCertificate checks that a member node may get a certificate
// in the state r at now: its organisation ACTIVE, the node enrolled and
// ACTIVE, the challenge nonce never answered. It returns the node.
func CheckMemberCertificate(r *Reader, c *commandv1.IssueMemberCertificate, now time.Time) (*trustfedv1.MemberNode, error) {
	if err := ValidateMemberCertificate(c, now); err != nil {
		return nil, err
	}
	if _, err := activeOrganization(r, "organization_id", c.OrganizationId); err != nil {
		return nil, err
	}
	n, err := activeMemberNode(r, c.OrganizationId, c.NodeId)
	if err != nil {
		return nil, err
	}
	if r.NonceUsed(c.Nonce) {
		return nil, FailedPrecondition("nonce", "challenge was already used")
	}
	return n, nil
}

func activeMemberNode(r *Reader, org, node string) (*trustfedv1.MemberNode, error) {
	n, ok := r.MemberNode(org, node)
	if !ok {
		return nil, NotFound("node_id", "member node %q of %q is not enrolled", node, org)
	}
	if n.Status != trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE {
		return nil, FailedPrecondition("node_id", "member node %q of %q was removed", node, org)
	}
	return n, nil
}

func applyIssueMemberCertificate(tx *memdb.Txn, env *commandv1.Envelope, _ uint64, _ Verifier) error {
	var c commandv1.IssueMemberCertificate
	if err := decode(env, &c); err != nil {
		return err
	}
	now := env.Time.AsTime()
	cur, err := CheckMemberCertificate(&Reader{txn: tx}, &c, now)
	if err != nil {
		return err
	}
	if err := tx.Insert(tableUsedNonces, &commandv1.UsedNonce{Nonce: c.Nonce, ExpireTime: c.NonceExpireTime}); err != nil {
		return err
	}
	n := proto.CloneOf(cur)
	n.LastCertificateSerial, n.LastCertificateTime = c.Serial, stamp(env)
	if err := tx.Insert(tableMemberNodes, n); err != nil {
		return err
	}
	return pruneNonces(tx, now)
}

// pruneNonces forgets nonces whose challenge expired at or before now, a
// bounded number per call. Whether a stale nonce is still there never
// changes an outcome: an expired challenge is refused before its nonce is
// looked up.
func pruneNonces(tx *memdb.Txn, now time.Time) error {
	return pruneOldest(tx, tableUsedNonces, "expire", func(raw any) bool {
		return !raw.(*commandv1.UsedNonce).GetExpireTime().AsTime().After(now)
	}, nil)
}

// MemberNode returns an organisation's member node (active or removed).
func (r *Reader) MemberNode(org, node string) (*trustfedv1.MemberNode, bool) {
	return first[*trustfedv1.MemberNode](r.txn, tableMemberNodes, "id", org, node)
}

func (r *Reader) memberNodeByKey(pub []byte) (*trustfedv1.MemberNode, bool) {
	return first[*trustfedv1.MemberNode](r.txn, tableMemberNodes, "key", pub)
}

// MemberNodeKey is the page position of a member node: "<org>/<node>".
func MemberNodeKey(n *trustfedv1.MemberNode) string { return n.OrganizationId + "/" + n.NodeId }

// ListMemberNodes lists member nodes in organisation then node id order:
// org's only, unless org is "" (every organisation's); removed ones only
// with includeRemoved. It starts after the position after (a
// MemberNodeKey, "" = from the start) and returns at most limit nodes;
// next is the position of the last one when more follow.
func (r *Reader) ListMemberNodes(org string, includeRemoved bool, after string, limit int) (nodes []*trustfedv1.MemberNode, next string) {
	afterOrg, afterNode, _ := strings.Cut(after, "/")
	var it memdb.ResultIterator
	var err error
	switch {
	case after != "" && (org == "" || afterOrg == org):
		it, err = r.txn.LowerBound(tableMemberNodes, "id", afterOrg, afterNode)
	case org != "":
		it, err = r.txn.LowerBound(tableMemberNodes, "id", org)
	default:
		it, err = r.txn.Get(tableMemberNodes, "id")
	}
	if err != nil {
		return nil, ""
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		n := raw.(*trustfedv1.MemberNode)
		if org != "" && n.OrganizationId != org {
			if n.OrganizationId > org {
				break
			}
			continue
		}
		if after != "" && n.OrganizationId == afterOrg && n.NodeId == afterNode {
			continue
		}
		if !includeRemoved && n.Status != trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE {
			continue
		}
		if len(nodes) == limit {
			return nodes, MemberNodeKey(nodes[len(nodes)-1])
		}
		nodes = append(nodes, n)
	}
	return nodes, ""
}

// NonceUsed reports whether a challenge nonce was already answered (and
// not yet forgotten: it is forgotten only after its challenge expired).
func (r *Reader) NonceUsed(nonce []byte) bool {
	_, ok := first[*commandv1.UsedNonce](r.txn, tableUsedNonces, "id", nonce)
	return ok
}

// SigningKeyByID returns the registry signing key with that id.
func (r *Reader) SigningKeyByID(id string) (*commandv1.SigningKey, bool) {
	return first[*commandv1.SigningKey](r.txn, tableSigningKeys, "id", id)
}
