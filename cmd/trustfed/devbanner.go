package main

import (
	"fmt"
	"io"

	"github.com/trustfed/trustfed/server"
)

// printDevBanner tells the user of `trustfed server -dev` how to reach it.
func printDevBanner(out io.Writer, d server.DevInfo) {
	keep := "kept: restart with -dev -data-dir " + d.DataDir + " for the same federation and token"
	if d.TemporaryDataDir {
		keep = "temporary: removed when the server stops; -dev -data-dir DIR keeps your work"
	}
	fmt.Fprintf(out, `
trustfed dev server is ready.
  DEV MODE: single node, loopback only, self-signed TLS. Not for production.

  node       %s
  data dir   %s
             (%s)
  gRPC       %s
  REST       https://%s   (OpenAPI: https://%s/v1/openapi.json)
  metrics    https://%s/metrics   (Prometheus; admin or monitor token)
  console    https://%s/ui/   (web dashboard: sign in with the admin token; the CA is self-signed)
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

`, d.NodeID, d.DataDir, keep, d.GRPCAddr, d.HTTPAddr, d.HTTPAddr, d.HTTPAddr, d.HTTPAddr, d.RaftAddr, d.CAFile, d.AdminTokenFile, d.AdminTokenExpiry, d.AdminToken,
		d.AdminKeyFile, d.GRPCAddr, d.AdminToken, d.CAFile, d.AdminKeyFile)
}
