package client

import (
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// EndorseNodeKey is the admin change that endorses registry node nodeID's
// own signing key pub (raw ed25519) for signatures made in [from, until).
func EndorseNodeKey(nodeID string, pub []byte, from, until time.Time) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_EndorseNodeKey{EndorseNodeKey: &trustfedv1.EndorseNodeKeyChange{
		NodeId: nodeID, PublicKey: pub, ValidFrom: timestamppb.New(from), ValidUntil: timestamppb.New(until)}}}
}

// RevokeNodeKey is the admin change that revokes node nodeID's key keyID:
// its signatures made at or after since stop verifying.
func RevokeNodeKey(nodeID, keyID string, since time.Time) *trustfedv1.AdminChange {
	return &trustfedv1.AdminChange{Change: &trustfedv1.AdminChange_RevokeNodeKey{RevokeNodeKey: &trustfedv1.RevokeNodeKeyChange{
		NodeId: nodeID, KeyId: keyID, Since: timestamppb.New(since)}}}
}
