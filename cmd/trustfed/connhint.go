package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkAddr refuses an --addr that is a URL: the CLI speaks gRPC to
// HOST:PORT, and https:// usually means the REST port was meant.
func checkAddr(addr string) error {
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		return nil
	}
	hostPort, _, _ := strings.Cut(rest, "/")
	return usageErrorf("--addr %q: give the gRPC address as HOST:PORT, without %s:// (e.g. --addr %s); "+
		"the CLI speaks gRPC, not REST (the REST port, -http-addr, answers curl)", addr, scheme, hostPort)
}

// connectionHint adds to a call's error what usually causes it when the
// connection itself failed: the CA (--cacert), an address that answers HTTP
// instead of gRPC (the REST port), or no answer at all within the timeout.
func connectionHint(err error, addr, cacert string, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	var he *hintError
	if errors.As(err, &he) {
		return err
	}
	st, _ := status.FromError(err)
	msg := st.Message()
	var hint string
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		ca := "the system roots (no --cacert)"
		if cacert != "" {
			ca = cacert
		}
		hint = fmt.Sprintf("hint: %s presented a certificate that %s did not sign: give the CA that signed the server's certificate with --cacert FILE (or TRUSTFED_CACERT); "+
			"a dev server prints its CA file in its banner", addr, ca)
	case strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "doesn't contain any IP SANs"):
		hint = fmt.Sprintf("hint: the certificate of %s does not name that host: use an address its certificate names (see the server's -tls-cert)", addr)
	case strings.Contains(msg, "unexpected HTTP status code received from server"),
		strings.Contains(msg, "unexpected content-type"),
		strings.Contains(msg, "error reading server preface"),
		strings.Contains(msg, "first record does not look like a TLS handshake"):
		hint = fmt.Sprintf("hint: %s answers HTTP, not gRPC: is it the REST port (-http-addr)? --addr takes the gRPC port (-grpc-addr; the dev server's banner names both)", addr)
	case st.Code() == codes.DeadlineExceeded && (strings.Contains(msg, "waiting for connections to become ready") || strings.Contains(msg, "context deadline exceeded")):
		hint = fmt.Sprintf("hint: no answer from %s within %s (--timeout): is a trustfed server listening there, and is it its gRPC port? A server that is starting or catching up may also be slow: retry with a longer --timeout", addr, timeout)
	case st.Code() == codes.Unavailable && strings.Contains(msg, "connection refused"):
		hint = fmt.Sprintf("hint: nothing listens on %s: start a server (trustfed server -dev) or give --addr (or TRUSTFED_ADDR) the address of a running node's gRPC port", addr)
	default:
		return err
	}
	return &hintError{err: err, hint: hint}
}
