package registry

import (
	"context"
	"fmt"

	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

// ProposeAdminChange records a sensitive admin change with its proposer's
// approval. The leader checks it against the current state first so that a
// bad change is refused with a precise error before anything is proposed;
// every replica checks it again, signatures included, when applying.
func (s *Server) ProposeAdminChange(ctx context.Context, req *trustfedv1.ProposeAdminChangeRequest) (*trustfedv1.ProposeAdminChangeResponse, error) {
	if _, err := state.ValidateAdminChange(s.cfg.Verifier, req.GetChange(), s.clock()); err != nil {
		return nil, err
	}
	if err := validateAdminSignature(req.GetApproval()); err != nil {
		return nil, err
	}
	cmd := &commandv1.ProposeAdminChange{Change: req.Change, Approval: req.Approval}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	rec, err := s.appliedAdminChange(state.AdminChangeID(req.Change))
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ProposeAdminChangeResponse{Change: rec}, nil
}

// ApproveAdminChange adds one admin's approval to a pending change.
func (s *Server) ApproveAdminChange(ctx context.Context, req *trustfedv1.ApproveAdminChangeRequest) (*trustfedv1.ApproveAdminChangeResponse, error) {
	if err := state.ValidateAdminChangeID("change_id", req.GetChangeId()); err != nil {
		return nil, err
	}
	if err := validateAdminSignature(req.GetApproval()); err != nil {
		return nil, err
	}
	cmd := &commandv1.ApproveAdminChange{ChangeId: req.ChangeId, Approval: req.Approval}
	if err := s.proposeWithID(ctx, cmd, req.GetRequestId()); err != nil {
		return nil, err
	}
	rec, err := s.appliedAdminChange(req.ChangeId)
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ApproveAdminChangeResponse{Change: rec}, nil
}

func validateAdminSignature(a *trustfedv1.AdminSignature) error {
	switch {
	case a == nil:
		return state.Invalid("approval", "is required: the admin's signature over the change bytes")
	case len(a.PublicKey) != 32:
		return state.Invalid("approval.public_key", "must be a raw 32-byte ed25519 public key, got %d bytes", len(a.PublicKey))
	case len(a.Signature) != 64:
		return state.Invalid("approval.signature", "must be a 64-byte ed25519 signature, got %d bytes", len(a.Signature))
	}
	return nil
}

// appliedAdminChange reads a change record on the leader right after a
// command about it was applied here.
func (s *Server) appliedAdminChange(id string) (*trustfedv1.AdminChangeRecord, error) {
	r := s.store.Read()
	rec, ok := r.AdminChange(id)
	if !ok {
		return nil, fmt.Errorf("admin change %q missing right after it was applied", id)
	}
	return s.presentChange(r, rec), nil
}

// presentChange is a record as answered: decoded content, the status at
// the current time (a pending change past its expiry is EXPIRED) and, once
// applied, the cascades it started (read from r).
func (s *Server) presentChange(r *state.Reader, rec *trustfedv1.AdminChangeRecord) *trustfedv1.AdminChangeRecord {
	out := proto.CloneOf(rec)
	var c trustfedv1.AdminChange
	if err := proto.Unmarshal(rec.Change, &c); err == nil {
		out.Content = &c
	}
	out.Status = state.ChangeStatus(rec, s.clock())
	if out.Status == trustfedv1.AdminChangeStatus_ADMIN_CHANGE_STATUS_APPLIED {
		out.CascadeIds = r.CascadeIDsAt(rec.ApplyIndex)
	}
	return out
}

// GetAdminChange returns one change with its approvals.
func (s *Server) GetAdminChange(ctx context.Context, req *trustfedv1.GetAdminChangeRequest) (*trustfedv1.GetAdminChangeResponse, error) {
	if err := state.ValidateAdminChangeID("change_id", req.GetChangeId()); err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	rec, ok := r.AdminChange(req.ChangeId)
	if !ok {
		return nil, state.NotFound("change_id", "change %s does not exist", req.ChangeId)
	}
	return &trustfedv1.GetAdminChangeResponse{Change: s.presentChange(r, rec), Meta: meta}, nil
}

// ListAdminChanges lists changes in id order, optionally only pending ones.
func (s *Server) ListAdminChanges(ctx context.Context, req *trustfedv1.ListAdminChangesRequest) (*trustfedv1.ListAdminChangesResponse, error) {
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	recs, next := r.AdminChanges(after, pageSize(req.GetPageSize()), req.GetPendingOnly(), s.clock())
	out := make([]*trustfedv1.AdminChangeRecord, len(recs))
	for i, rec := range recs {
		out[i] = s.presentChange(r, rec)
	}
	return &trustfedv1.ListAdminChangesResponse{Changes: out, NextPageToken: encodePageToken(next), Meta: meta}, nil
}

// ListAdmins lists the federation's admins, active and removed.
func (s *Server) ListAdmins(ctx context.Context, req *trustfedv1.ListAdminsRequest) (*trustfedv1.ListAdminsResponse, error) {
	r, meta, err := s.read(ctx, req.GetConsistency())
	if err != nil {
		return nil, err
	}
	return &trustfedv1.ListAdminsResponse{Admins: r.Admins(), Meta: meta}, nil
}
