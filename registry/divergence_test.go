package registry

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// A diverged node refuses every call, unary, public and streaming, with
// UNAVAILABLE naming the index and the runbook; /readyz and /healthz say
// why, trustfed_diverged is 1, and the marker survives a restart.
func TestDivergedNodeRefusesEverything(t *testing.T) {
	r := newMemberRig(t, false)
	dir := t.TempDir()
	d, err := OpenDivergence(dir, nil)
	require.NoError(t, err)
	r.s.cfg.Divergence = d
	keys := trustfedv1.RegistryService_GetKeys_FullMethodName
	call := func() error {
		_, err := r.s.unaryInterceptor(context.Background(), &trustfedv1.GetKeysRequest{}, &grpc.UnaryServerInfo{FullMethod: keys},
			func(context.Context, any) (any, error) { return &trustfedv1.GetKeysResponse{}, nil })
		return err
	}
	require.NoError(t, call())
	require.Empty(t, r.s.Fault())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(nodeCollector{r.s})
	diverged := func() float64 {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "trustfed_diverged" {
				require.Len(t, mf.GetMetric(), 1)
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no trustfed_diverged metric")
		return 0
	}
	require.Equal(t, 0.0, diverged())

	d.Mark(42, "the state at index 42 commits to aa, the cluster's checkpoint says bb")
	d.Mark(50, "a later mismatch") // the first index is kept
	err = call()
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Equal(t, "this node's state diverged from the cluster's at index 42: repair it, see docs/operations.md", status.Convert(err).Message())
	err = r.s.streamInterceptor(nil, nil, &grpc.StreamServerInfo{FullMethod: trustfedv1.CascadeService_WatchEvents_FullMethodName},
		func(any, grpc.ServerStream) error { t.Fatal("a diverged node served a stream"); return nil })
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	ready := r.s.Readiness()
	require.False(t, ready.Ready)
	require.Contains(t, ready.Reason, "diverged from the cluster's at index 42")
	require.True(t, strings.Contains(r.s.Fault(), "commits to aa"), r.s.Fault())
	require.Equal(t, 1.0, diverged())

	again, err := OpenDivergence(dir, nil)
	require.NoError(t, err)
	m, ok := again.Status()
	require.True(t, ok, "a restart does not clear the divergence")
	require.Equal(t, uint64(42), m.Index)
}

// A diverged leader steps down (asks Raft to transfer leadership); when it
// cannot (here a single node), it commits the divergence report itself, so
// the audit log records it, and the reporter ends.
func TestDivergedLeaderStepsDownOrReportsItself(t *testing.T) {
	r := newMemberRig(t, false)
	d, err := OpenDivergence(t.TempDir(), nil)
	require.NoError(t, err)
	r.s.cfg.Divergence = d
	reported := make(chan *commandv1.ReportDivergence, 1)
	r.raft.onApply = func(_ context.Context, cmd []byte) {
		env := &commandv1.Envelope{}
		if proto.Unmarshal(cmd, env) == nil && env.Type == commandv1.CommandType_COMMAND_TYPE_REPORT_DIVERGENCE {
			c := &commandv1.ReportDivergence{}
			require.NoError(t, proto.Unmarshal(env.Payload, c))
			require.Equal(t, "node:n1", env.Principal)
			reported <- c
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); r.s.reportDivergence(ctx) }()

	d.Mark(42, "the state at index 42 commits to aa")
	select {
	case c := <-reported:
		require.Equal(t, "n1", c.NodeId)
		require.Equal(t, uint64(42), c.Index)
		require.Equal(t, "the state at index 42 commits to aa", c.Reason)
	case <-time.After(10 * time.Second):
		t.Fatal("the divergence was never reported")
	}
	<-done // reported once, the reporter ends
	require.Equal(t, int32(1), r.raft.transfers.Load(), "the leader tried to step down first")
}
