package main

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A bad address flag fails at start, naming the flag, with a usage error:
// never a server that runs with, or advertises, an address nobody can dial.
func TestServerAddressFlags(t *testing.T) {
	base := func() serverFlags {
		return serverFlags{nodeID: "n2", dataDir: t.TempDir(), tlsCA: "ca.pem", tlsCert: "n2.pem", tlsKey: "n2-key.pem",
			raftAddr: "127.0.0.1:0", grpcAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", memberCertTTL: time.Hour, auditOrigin: "test/audit", tokenTTL: 24 * time.Hour}
	}
	f := base()
	f.join, f.advertise, f.advRaft = "10.0.0.1:7443", "n2.example.org:7443", "n2.example.org:7000"
	require.NoError(t, f.resolve())
	f = base()
	f.raftAddr, f.grpcAddr, f.advertise = ":7000", "0.0.0.0:7443", "n2.example.org:7443"
	require.NoError(t, f.resolve(), "a listen address may leave the host out")

	for _, tc := range []struct {
		set  func(*serverFlags)
		want string
	}{
		{func(f *serverFlags) { f.raftAddr = "127.0.0.1:99999" }, `-raft-addr "127.0.0.1:99999": port "99999" is not in 0..65535`},
		{func(f *serverFlags) { f.grpcAddr = "127.0.0.1" }, `-grpc-addr "127.0.0.1" is not host:port`},
		{func(f *serverFlags) { f.httpAddr = "https://127.0.0.1:8443" }, `-http-addr "https://127.0.0.1:8443" must be host:port, without a scheme`},
		{func(f *serverFlags) { f.join = "127.0.0.1:0" }, `-join "127.0.0.1:0": port "0" is not in 1..65535`},
		{func(f *serverFlags) { f.join = "10.0.0.1:7443/v1" }, `-join "10.0.0.1:7443/v1" must be host:port, without a path`},
		{func(f *serverFlags) { f.advertise = ":7443" }, `-advertise-api ":7443" has no host`},
		{func(f *serverFlags) { f.advRaft = "n2.example.org:70000" }, `-advertise-raft "n2.example.org:70000": port "70000" is not in 1..65535`},
		{func(f *serverFlags) { f.grpcAddr = "0.0.0.0:7443" }, `-grpc-addr "0.0.0.0:7443" listens on every interface: set -advertise-api`},
		{func(f *serverFlags) { f.grpcAddr = ":7443" }, `-grpc-addr ":7443" listens on every interface: set -advertise-api`},
	} {
		f := base()
		tc.set(&f)
		err := f.resolve()
		require.ErrorContains(t, err, tc.want)
		require.True(t, errors.As(err, new(usageError)), "%v is a usage error", err)
	}
}
