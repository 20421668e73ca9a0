package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// joinCluster asks the member at target to add this node, authenticating
// with this node's certificate, until it succeeds. The node joins as a
// non-voter; the leader promotes it to voter once it has caught up.
func joinCluster(ctx context.Context, target string, tlsConfig *tls.Config, nodeID, raftAddr, apiAddr string, logger *slog.Logger) error {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return fmt.Errorf("join %s: %w", target, err)
	}
	defer conn.Close()
	client := trustfedv1.NewClusterServiceClient(conn)
	return retry(ctx, logger, "join cluster via "+target, func() error {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		resp, err := client.Join(cctx, &trustfedv1.JoinRequest{NodeId: nodeID, RaftAddress: raftAddr, ApiAddress: apiAddr})
		if err == nil {
			logger.Info("joined cluster; the leader promotes a non-voter to voter once it has caught up", "via", target,
				"suffrage", resp.GetMember().GetSuffrage().String())
			return nil
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
			return permanent{err}
		}
		return err
	})
}

// permanent marks an error retry must not retry.
type permanent struct{ error }

// retry calls fn until it succeeds, returns a permanent error, or ctx ends,
// backing off from 100ms to 5s between attempts.
func retry(ctx context.Context, logger *slog.Logger, what string, fn func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if p, ok := err.(permanent); ok {
			return fmt.Errorf("%s: %w", what, p.error)
		}
		logger.Warn("retrying", "what", what, "in", backoff, "error", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
