// Package server assembles a trustfed registry node: listeners and TLS, the
// Raft node and its state machine, the registry's gRPC services, the REST
// gateway and HTTP endpoints, and the tasks only the leader runs.
//
//	srv, err := server.New(cfg) // binds the listeners, opens the data dir, starts Raft
//	if err != nil { ... }
//	defer srv.Close()
//	err = srv.Run(ctx)          // serves until ctx ends or a part fails
//
// `trustfed server` turns its flags into a [Config]; tests start a real
// server in-process the same way, with ports chosen by the kernel (":0")
// and read back with [Server.GRPCAddr] and its siblings.
//
// Files by concern: config.go (settings and their checks), listeners.go
// (TLS material, sockets, addrs.json), raft.go (consensus node, joining),
// services.go (registry services, audit log, revocation cascades), http.go
// (REST gateway, /metrics, debug profiles), leader.go (leader tasks), dev.go
// (-dev: the enrolled admin key and the ready report).
package server
