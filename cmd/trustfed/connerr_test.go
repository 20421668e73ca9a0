package main

import (
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/client"
	"github.com/trustfed/trustfed/internal/testutil/testserver"
)

// silentListener accepts connections and never answers on them; the test
// closes it and every connection.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// Connection mistakes end with a hint naming the fix, not a raw gRPC error.
func TestCLIConnectionErrorsHaveHints(t *testing.T) {
	t.Run("wrong CA", func(t *testing.T) {
		_, addr, _ := startCLIFake(t)
		other, err := attestation.EnsureDevTLS(t.TempDir(), "x", []string{"127.0.0.1"}, time.Now())
		require.NoError(t, err)
		code, _, stderr := runCLI(map[string]string{client.EnvAddr: addr, client.EnvCACert: other.CAFile, client.EnvToken: "t"}, "status")
		require.Equal(t, exitError, code)
		require.Contains(t, stderr, "certificate signed by unknown authority")
		require.Contains(t, stderr, "--cacert")
		require.Contains(t, stderr, filepath.Base(other.CAFile))
	})
	t.Run("the REST port as --addr", func(t *testing.T) {
		d := testserver.StartDev(t)
		env := d.Env()
		env[client.EnvAddr] = d.HTTPAddr()
		code, _, stderr := runCLI(env, "status")
		require.Equal(t, exitError, code)
		require.Contains(t, stderr, d.HTTPAddr()+" answers HTTP, not gRPC")
		require.Contains(t, stderr, "REST port")
	})
	t.Run("a URL as --addr", func(t *testing.T) {
		code, _, stderr := runCLI(map[string]string{client.EnvToken: "t"}, "--addr", "https://127.0.0.1:7443", "status")
		require.Equal(t, exitUsage, code)
		require.Contains(t, stderr, `--addr "https://127.0.0.1:7443"`)
		require.Contains(t, stderr, "HOST:PORT")
		require.Contains(t, stderr, "127.0.0.1:7443")
	})
	t.Run("a server that never answers", func(t *testing.T) {
		addr := silentListener(t)
		start := time.Now()
		code, _, stderr := runCLI(map[string]string{client.EnvAddr: addr, client.EnvToken: "t"}, "--timeout", "700ms", "status")
		require.Equal(t, exitError, code)
		require.Less(t, time.Since(start), 20*time.Second)
		require.Contains(t, stderr, "no answer from "+addr+" within 700ms")
	})
}

// wait-ready: exit 0 once a real node is ready (no token needed), exit 4
// naming the address when --wait-timeout passes first.
func TestWaitReady(t *testing.T) {
	d := testserver.StartDev(t)
	env := map[string]string{client.EnvAddr: d.GRPCAddr(), client.EnvCACert: d.CAFile()} // no token
	code, stdout, stderr := runCLI(env, "wait-ready", "--wait-timeout", "30s")
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, d.GRPCAddr()+" is ready\n", stdout)

	addr := silentListener(t)
	start := time.Now()
	code, _, stderr = runCLI(map[string]string{client.EnvAddr: addr}, "--timeout", "300ms", "wait-ready", "--wait-timeout", "1s")
	require.Equal(t, exitTimeout, code, stderr)
	require.Contains(t, stderr, addr+" is not ready after --wait-timeout 1s")
	require.Less(t, time.Since(start), 15*time.Second)

	code, _, stderr = runCLI(map[string]string{client.EnvAddr: "127.0.0.1:1"}, "wait-ready", "--wait-timeout", "500ms")
	require.Equal(t, exitTimeout, code, stderr)
	require.Contains(t, stderr, "nothing listens on 127.0.0.1:1")
}
