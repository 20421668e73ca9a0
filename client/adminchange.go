package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultAdminChangeTTL is how long a proposed admin change waits for the
// other admins' approvals unless the proposer says otherwise.
const DefaultAdminChangeTTL = 24 * time.Hour

// EncodeAdminChange serializes c for signing, first giving it a fresh random
// nonce and, if it has none, an expire_time of now+ttl. The bytes returned
// are what every approving admin signs: keep them, don't re-encode.
func EncodeAdminChange(c *trustfedv1.AdminChange, now time.Time, ttl time.Duration) ([]byte, error) {
	c = proto.CloneOf(c)
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, fmt.Errorf("admin change nonce: %w", err)
	}
	c.Nonce = hex.EncodeToString(nonce[:])
	if c.ExpireTime == nil {
		c.ExpireTime = timestamppb.New(now.Add(ttl))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode admin change: %w", err)
	}
	return b, nil
}

// ApproveAdminChange signs a change's bytes with an admin's key.
func ApproveAdminChange(key ed25519.PrivateKey, change []byte) *trustfedv1.AdminSignature {
	return &trustfedv1.AdminSignature{
		PublicKey: key.Public().(ed25519.PublicKey),
		Signature: attestation.Sign(key, attestation.PurposeAdminChange, change),
	}
}

// ProposeAdminChange encodes c, signs it with the proposer's admin key and
// proposes it, retrying with the same request (and request id) when the
// outcome is unknown. The answer says whether it was applied at once (the
// policy needs one approval) or waits for other admins
// (ApproveAdminChange). Registry refusals come back as gRPC statuses.
func (c *Client) ProposeAdminChange(ctx context.Context, key ed25519.PrivateKey, change *trustfedv1.AdminChange, ttl time.Duration) (*trustfedv1.AdminChangeRecord, error) {
	if key == nil {
		return nil, errors.New("propose admin change: no admin key (set TRUSTFED_ADMIN_KEY or --admin-key)")
	}
	raw, err := EncodeAdminChange(change, time.Now(), ttl)
	if err != nil {
		return nil, err
	}
	req := &trustfedv1.ProposeAdminChangeRequest{Change: raw, Approval: ApproveAdminChange(key, raw), RequestId: NewRequestID()}
	var resp *trustfedv1.ProposeAdminChangeResponse
	err = RetryUnknown(ctx, func(ctx context.Context) (err error) {
		resp, err = c.admin.ProposeAdminChange(ctx, req)
		return err
	})
	return resp.GetChange(), err
}

// ApproveAdminChange fetches a pending change, signs its exact bytes with
// key and submits the approval (retried like ProposeAdminChange).
func (c *Client) ApproveAdminChange(ctx context.Context, key ed25519.PrivateKey, changeID string) (*trustfedv1.AdminChangeRecord, error) {
	if key == nil {
		return nil, errors.New("approve admin change: no admin key (set TRUSTFED_ADMIN_KEY or --admin-key)")
	}
	got, err := c.admin.GetAdminChange(ctx, &trustfedv1.GetAdminChangeRequest{ChangeId: changeID})
	if err != nil {
		return nil, err
	}
	req := &trustfedv1.ApproveAdminChangeRequest{ChangeId: changeID, Approval: ApproveAdminChange(key, got.GetChange().GetChange()), RequestId: NewRequestID()}
	var resp *trustfedv1.ApproveAdminChangeResponse
	err = RetryUnknown(ctx, func(ctx context.Context) (err error) {
		resp, err = c.admin.ApproveAdminChange(ctx, req)
		return err
	})
	return resp.GetChange(), err
}
