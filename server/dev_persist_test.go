package server_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/trustfed/trustfed/client"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/server"
)

// runDev runs a dev server on dataDir ("" = a temporary one) until it is
// ready; stop ends it and waits for Run to return.
func runDev(t *testing.T, dataDir string) (info server.DevInfo, stop func()) {
	t.Helper()
	cfg := server.DefaultConfig()
	cfg.Dev, cfg.DataDir, cfg.LogOutput = true, dataDir, io.Discard
	cfg.RaftAddr, cfg.GRPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	ready := make(chan server.DevInfo, 1)
	cfg.DevReady = func(d server.DevInfo) { ready <- d }
	srv, err := server.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	select {
	case info = <-ready:
	case err := <-done:
		stopped = true
		t.Fatalf("dev server stopped before it was ready: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("dev server not ready after 60s")
	}
	return info, stop
}

// A dev server without -data-dir says its data is temporary and removes
// it when it stops.
func TestDevTemporaryDataDirRemovedOnExit(t *testing.T) {
	info, stop := runDev(t, "")
	require.True(t, info.TemporaryDataDir)
	require.DirExists(t, info.DataDir)
	stop()
	require.NoDirExists(t, info.DataDir)
}

// -dev -data-dir DIR restarts with the same federation: the same admin
// token and admin key, and what was written before.
func TestDevDataDirKeepsWork(t *testing.T) {
	dir := t.TempDir()
	first, stop := runDev(t, dir)
	require.False(t, first.TemporaryDataDir)
	c, err := client.New(t.Context(), client.Config{Addr: first.GRPCAddr, Token: first.AdminToken, CACertFile: first.CAFile, Timeout: 30 * time.Second})
	require.NoError(t, err)
	created, err := c.Access().CreateToken(t.Context(), &trustfedv1.CreateTokenRequest{
		Role: trustfedv1.TokenRole_TOKEN_ROLE_REGULATOR, Description: "kept across dev restarts", Ttl: durationpb.New(time.Hour)})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	stop()
	require.DirExists(t, dir)

	second, _ := runDev(t, dir)
	require.Equal(t, first.AdminToken, second.AdminToken)
	require.Equal(t, first.AdminKeyFile, second.AdminKeyFile)
	c, err = client.New(t.Context(), client.Config{Addr: second.GRPCAddr, Token: second.AdminToken, CACertFile: second.CAFile, Timeout: 30 * time.Second})
	require.NoError(t, err)
	defer c.Close()
	list, err := c.Access().ListTokens(t.Context(), &trustfedv1.ListTokensRequest{})
	require.NoError(t, err)
	var found bool
	for _, tok := range list.GetTokens() {
		found = found || tok.GetId() == created.GetToken().GetId()
	}
	require.True(t, found, "the token created before the restart is still there")
}
