package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func newHealthCmd(a *app) *cobra.Command {
	var httpAddr string
	var live bool
	cmd := &cobra.Command{
		Use:   "health [--http-addr 127.0.0.1:8443] [--live]",
		Short: "Check the local node's GET /readyz (or /healthz with --live): exit 0 when it answers 200, 1 otherwise",
		Long: `Ask the node on this machine whether it is ready (GET /readyz on its REST
port: it knows the leader, has caught up, has not diverged) or, with --live,
alive (GET /healthz). For container health checks: the image is FROM
scratch, so the binary checks itself (deploy/Dockerfile's HEALTHCHECK).
No token is sent. With --cacert (or TRUSTFED_CACERT) the node's certificate
is verified; without it only a loopback address is accepted and the
certificate is not checked (the answer is a status code, nothing is sent).
An address bound to all interfaces (0.0.0.0:8443, :8443) is asked on
127.0.0.1. Exits 0 on 200, 1 with the node's reason otherwise.`,
		Example: `  trustfed health --http-addr 127.0.0.1:8443 --cacert /certs/ca.pem`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/readyz"
			if live {
				path = "/healthz"
			}
			host, port, err := net.SplitHostPort(httpAddr)
			if err != nil {
				return usageErrorf("--http-addr %q: want host:port (the node's REST address)", httpAddr)
			}
			if host == "" || host == "0.0.0.0" || host == "::" {
				host = "127.0.0.1"
			}
			tc := &tls.Config{MinVersion: tls.VersionTLS12}
			if a.cacert != "" {
				pem, err := os.ReadFile(a.cacert)
				if err != nil {
					return fmt.Errorf("--cacert: %w", err)
				}
				tc.RootCAs = x509.NewCertPool()
				if !tc.RootCAs.AppendCertsFromPEM(pem) {
					return fmt.Errorf("--cacert %s holds no PEM certificate", a.cacert)
				}
			} else {
				ip := net.ParseIP(host)
				if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
					return usageErrorf("--http-addr %s is not a loopback address: give --cacert to check a node elsewhere", httpAddr)
				}
				tc.InsecureSkipVerify = true //nolint:gosec // loopback only, no credential sent: see Long
			}
			hc := &http.Client{Timeout: a.timeout, Transport: &http.Transport{TLSClientConfig: tc}}
			defer hc.CloseIdleConnections()
			url := "https://" + net.JoinHostPort(host, port) + path
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, url, nil)
			if err != nil {
				return err
			}
			resp, err := hc.Do(req)
			if err != nil {
				return fmt.Errorf("%s: %w", url, err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			if resp.StatusCode == http.StatusOK {
				fmt.Fprintf(a.stdout, "%s: %d ok\n", url, resp.StatusCode)
				return nil
			}
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, healthReason(body))
		},
	}
	cmd.Flags().StringVar(&httpAddr, "http-addr", "127.0.0.1:8443", "the node's REST address (its -http-addr)")
	cmd.Flags().BoolVar(&live, "live", false, "ask /healthz (alive) instead of /readyz (ready)")
	return cmd
}

// healthReason is the reason in a /readyz or /healthz answer: the JSON
// "reason" field, or the text itself.
func healthReason(body []byte) string {
	var r struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &r) == nil && r.Reason != "" {
		return r.Reason
	}
	return strings.TrimSpace(string(body))
}
