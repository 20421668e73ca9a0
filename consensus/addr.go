package consensus

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// CheckAddress checks that addr is a host:port another server can dial:
// a non-empty host (name or IP, no scheme, no path) and a port in
// 1..65535. The error says what is wrong, without the address itself, so
// callers can prefix it with the field or flag it came from.
func CheckAddress(addr string) error { return checkAddress(addr, false) }

// CheckListenAddress checks a listen address: like CheckAddress, except
// that the host may be empty (all interfaces) and the port 0 (any free
// port).
func CheckListenAddress(addr string) error { return checkAddress(addr, true) }

func checkAddress(addr string, listen bool) error {
	if addr == "" {
		return errors.New("is required")
	}
	if strings.Contains(addr, "://") {
		return fmt.Errorf("%q must be host:port, without a scheme", addr)
	}
	if strings.ContainsAny(addr, "/?#@ \t\r\n") {
		return fmt.Errorf("%q must be host:port, without a path, user or spaces", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	if host == "" && !listen {
		return fmt.Errorf("%q has no host", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	lowest := uint64(1)
	if listen {
		lowest = 0
	}
	if err != nil || p < lowest || len(port) > 5 {
		return fmt.Errorf("%q: port %q is not in %d..65535", addr, port, lowest)
	}
	return nil
}
