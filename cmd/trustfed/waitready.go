package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/trustfed/trustfed/client"
)

// waitReadyPoll is how often wait-ready asks.
const waitReadyPoll = 200 * time.Millisecond

func newWaitReadyCmd(a *app) *cobra.Command {
	var waitFor time.Duration
	cmd := &cobra.Command{
		Use:   "wait-ready [--wait-timeout 60s]",
		Short: "Wait until the node at --addr serves calls (what its /readyz says); exit 4 if it does not in time",
		Long: `Wait until the node at --addr is ready: it knows the leader, has caught up
with its log, and (a node started with -bootstrap) has stored its bootstrap
admin token. It asks the node's standard gRPC health service, which needs no
token, so scripts can wait for a node they just started before they read its
admin token file. A node not yet listening is waited for too.

Exits 0 once ready, 4 when --wait-timeout passes first (naming the last
answer), 2 on a usage error.`,
		Example: `  trustfed wait-ready --addr 127.0.0.1:7441 --cacert certs/ca.pem --wait-timeout 60s`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if waitFor <= 0 {
				return usageErrorf("--wait-timeout must be positive")
			}
			if err := checkAddr(a.addr); err != nil {
				return err
			}
			// No credentials: the health service is public.
			c, err := client.New(cmd.Context(), client.Config{Addr: a.addr, CACertFile: a.cacert, Timeout: a.timeout})
			if err != nil {
				return err
			}
			defer func() { _ = c.Close() }()
			return waitReady(cmd.Context(), a, healthpb.NewHealthClient(c.Conn()), waitFor)
		},
	}
	cmd.Flags().DurationVar(&waitFor, "wait-timeout", time.Minute, "give up after this long (exit 4)")
	return cmd
}

// waitReady polls the health service until SERVING or waitFor passes.
func waitReady(ctx context.Context, a *app, h healthpb.HealthClient, waitFor time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	tick := time.NewTicker(waitReadyPoll)
	defer tick.Stop()
	var last error
	for {
		callCtx, callCancel := context.WithTimeout(ctx, min(a.timeout, waitFor))
		resp, err := h.Check(callCtx, &healthpb.HealthCheckRequest{})
		callCancel()
		switch {
		case err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
			fmt.Fprintf(a.stdout, "%s is ready\n", a.addr)
			return nil
		case err == nil:
			last = fmt.Errorf("it answers %s (its /readyz says why)", resp.GetStatus())
		case ctx.Err() == nil:
			last = connectionHint(err, a.addr, a.cacert, a.timeout)
		}
		select {
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return &codeError{code: exitTimeout, err: fmt.Errorf("%s is not ready after --wait-timeout %s: %s", a.addr, waitFor, describeError(last))}
		case <-tick.C:
		}
	}
}
