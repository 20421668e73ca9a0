package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
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

func printDevBanner(out io.Writer, f serverFlags, grpcAddr, httpAddr net.Addr, raftAddr, caFile, token, tokenExpiry, adminKey string) {
	fmt.Fprintf(out, `
trustfed dev server is ready.
  DEV MODE: single node, loopback only, self-signed TLS. Not for production.

  node       %s
  data dir   %s
  gRPC       %s
  REST       https://%s   (OpenAPI: https://%s/v1/openapi.json)
  metrics    https://%s/metrics   (Prometheus; admin or monitor token)
  raft       %s
  CA cert    %s
  admin token (also in %s; expires %s, -bootstrap-token-ttl):
    %s
  admin key  %s   (approves admin changes; dev quorum: 1 admin)

Use it from another terminal:
  export TRUSTFED_ADDR=%s
  export TRUSTFED_TOKEN=%s
  export TRUSTFED_CACERT=%s
  export TRUSTFED_ADMIN_KEY=%s
  trustfed status

`, f.nodeID, f.dataDir, grpcAddr, httpAddr, httpAddr, httpAddr, raftAddr, caFile, f.tokenFile, tokenExpiry, token, adminKey, grpcAddr, token, caFile, adminKey)
}
