package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/internal/bench"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/server"
)

// trustfed bench against a running dev server (its admin token and key):
// it preloads organisations, agreements and member nodes, runs checks for
// a second and prints one JSON line with throughput, latencies, errors and
// the server's CPU per check.
func TestBenchAgainstADevServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	d := testserver.StartDev(t, func(c *server.Config) { c.Limits = registry.Limits{} })
	for _, mode := range []string{bench.ModeChecks, bench.ModeMixed} {
		code, stdout, stderr := runCLI(d.Env(), "bench", "--target", d.GRPCAddr(), "--http-addr", d.HTTPAddr(),
			"--mode", mode, "--consistency", "stale", "--orgs", "3", "--agreements", "2", "--callers", "4", "--conns", "2", "--duration", "1s")
		require.Equal(t, exitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
		var res bench.Result
		require.NoError(t, json.Unmarshal([]byte(stdout), &res), "one JSON line: %s", stdout)
		require.Equal(t, mode, res.Mode)
		require.Equal(t, "stale", res.Consistency)
		require.Equal(t, 1, res.Nodes)
		require.Positive(t, res.Checks, "%s", stdout)
		require.Empty(t, res.Errors, "every check allowed, every write applied: %s", stdout)
		require.Equal(t, res.Checks+res.Writes, res.Ops)
		if mode == bench.ModeMixed {
			require.Positive(t, res.Writes, "%s", stdout)
		} else {
			require.Zero(t, res.Writes)
		}
		require.InDelta(t, float64(res.Ops)/res.DurationS, res.OpsPerS, 1e-6)
		require.GreaterOrEqual(t, res.DurationS, 1.0)
		l := res.LatencyUS
		require.True(t, 0 < l.P50 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999 && l.P999 <= l.Max, "%+v", l)
		require.Empty(t, res.CPUError)
		require.NotNil(t, res.ServerCPUUSPerOp, "%s", stdout)
		require.Positive(t, *res.ServerCPUS)
	}
}

func TestBenchUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "reads"}, "--mode"},
		{[]string{"--consistency", "eventual"}, "--consistency"},
		{[]string{"--callers", "2", "--conns", "3"}, "--conns"},
		{[]string{"--orgs", "3", "--agreements", "4"}, "--agreements"},
		{[]string{"--nodes", "2"}, "--nodes"},
		{[]string{"--target", "a:1", "--target", "b:1", "--http-addr", "a:2"}, "--http-addr"},
		{[]string{"--duration", "0s"}, "--duration"},
		{[]string{"--member-nodes", "-1"}, "--member-nodes"},
		{[]string{"--preload-workers", "0"}, "--preload-workers"},
		{[]string{"--preload-import", "1001"}, "--preload-import"},
		{[]string{"--target", "a:1", "--keep"}, "--keep"},
	} {
		code, _, stderr := runCLI(nil, append([]string{"bench"}, tc.args...)...)
		require.Equal(t, exitUsage, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.want, "%v", tc.args)
	}
}

// The scale preload at a tiny scale: --member-nodes are enrolled (beyond
// the connections' own), --preload-workers calls at a time, the agreements
// imported --preload-import at a time (64: four calls, the last partial) or
// proposed and signed one call each (0), and the result says what was
// loaded, how long it took and every node's memory; the registry holds
// exactly that afterwards.
func TestBenchPreloadsMemberNodesAtTinyScale(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	for _, imports := range []string{"64", "0"} {
		t.Run("preload-import="+imports, func(t *testing.T) { testBenchPreloadAtTinyScale(t, imports) })
	}
}

func testBenchPreloadAtTinyScale(t *testing.T, imports string) {
	d := testserver.StartDev(t, func(c *server.Config) { c.Limits = registry.Limits{} })
	code, stdout, stderr := runCLI(d.Env(), "bench", "--target", d.GRPCAddr(), "--http-addr", d.HTTPAddr(),
		"--orgs", "50", "--agreements", "200", "--member-nodes", "100", "--preload-workers", "16", "--preload-import", imports,
		"--callers", "2", "--conns", "1", "--duration", "200ms")
	require.Equal(t, exitOK, code, "stdout: %s\nstderr: %s", stdout, stderr)
	var res bench.Result
	require.NoError(t, json.Unmarshal([]byte(stdout), &res), "one JSON line: %s", stdout)
	require.Equal(t, 50, res.Orgs)
	require.Equal(t, 200, res.Agreements)
	require.Equal(t, 100, res.MemberNodes)
	require.Positive(t, res.PreloadS)
	require.Len(t, res.ServerRSSMiB, 1, "%s", stdout)
	require.Positive(t, res.ServerRSSMiB[0])
	require.Empty(t, res.Errors, "%s", stdout)

	c := d.Client(t)
	active, token := 0, ""
	for {
		resp, err := c.Admin().ListAgreements(t.Context(), &trustfedv1.ListAgreementsRequest{PageSize: 100, PageToken: token})
		require.NoError(t, err)
		for _, a := range resp.Agreements {
			if a.Status == trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
				active++
			}
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	require.Equal(t, 200, active, "every preloaded agreement is signed by both")
	nodes := 0
	token = ""
	for {
		resp, err := c.Access().ListMemberNodes(t.Context(), &trustfedv1.ListMemberNodesRequest{PageSize: 100, PageToken: token})
		require.NoError(t, err)
		nodes += len(resp.Nodes)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	require.Equal(t, 100+1, nodes, "the preloaded member nodes and the connection's")
}
