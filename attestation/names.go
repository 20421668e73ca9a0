package attestation

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/trustfed/trustfed/ids"
)

// SPIFFE names of trustfed identities.
const (
	// TrustDomain is the SPIFFE trust domain of every trustfed identity.
	TrustDomain = "trustfed"
	// nodePathPrefix is the path prefix of node identities within TrustDomain.
	nodePathPrefix = "/node/"
	// orgPathPrefix and memberPathInfix frame member node identities:
	// /org/<org>/member/<node>.
	orgPathPrefix   = "/org/"
	memberPathInfix = "/member/"
)

// ValidateNodeID reports whether id is a valid node ID: ^[a-z0-9][a-z0-9-]{0,62}$.
func ValidateNodeID(id string) error {
	if !ids.Node.Match(id) {
		return fmt.Errorf("%w: %q must match %s", ErrInvalidNodeID, id, ids.Node)
	}
	return nil
}

// NodeSPIFFEID returns the URI SAN of a node certificate:
// spiffe://trustfed/node/<nodeID>.
func NodeSPIFFEID(nodeID string) string {
	return "spiffe://" + TrustDomain + nodePathPrefix + nodeID
}

// NodeIDFromCert returns the node ID carried by cert's
// spiffe://trustfed/node/<id> URI SAN, and false if it carries none (or a
// malformed one). A certificate that also names a member node is not a
// server node's: it is refused.
func NodeIDFromCert(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	for _, u := range cert.URIs {
		if _, _, member := memberFromURI(u); member {
			return "", false
		}
	}
	for _, u := range cert.URIs {
		if id, ok := nodeIDFromURI(u); ok {
			return id, true
		}
	}
	return "", false
}

func nodeIDFromURI(u *url.URL) (string, bool) {
	if u == nil || u.Scheme != "spiffe" || u.Host != TrustDomain || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", false
	}
	id, ok := strings.CutPrefix(u.Path, nodePathPrefix)
	if !ok || ValidateNodeID(id) != nil {
		return "", false
	}
	return id, true
}

// MemberSPIFFEID returns the URI SAN of a member node's client certificate:
// spiffe://trustfed/org/<org>/member/<node>.
func MemberSPIFFEID(org, node string) string {
	return "spiffe://" + TrustDomain + orgPathPrefix + org + memberPathInfix + node
}

// MemberFromCert returns the organisation and member node named by cert's
// spiffe://trustfed/org/<org>/member/<node> URI SAN. ok is false when cert
// names no member, names more than one, also names a server node
// (spiffe://trustfed/node/<id>), or may serve as a TLS server certificate:
// a server node's certificate is never a member's, nor the reverse.
func MemberFromCert(cert *x509.Certificate) (org, node string, ok bool) {
	if cert == nil {
		return "", "", false
	}
	for _, u := range cert.ExtKeyUsage {
		if u == x509.ExtKeyUsageServerAuth || u == x509.ExtKeyUsageAny {
			return "", "", false
		}
	}
	found := 0
	for _, u := range cert.URIs {
		if _, isNode := nodeIDFromURI(u); isNode {
			return "", "", false
		}
		if o, n, isMember := memberFromURI(u); isMember {
			org, node = o, n
			found++
		}
	}
	if found != 1 {
		return "", "", false
	}
	return org, node, true
}

func memberFromURI(u *url.URL) (org, node string, ok bool) {
	if u == nil || u.Scheme != "spiffe" || u.Host != TrustDomain || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.RawPath != "" {
		return "", "", false
	}
	rest, ok := strings.CutPrefix(u.Path, orgPathPrefix)
	if !ok {
		return "", "", false
	}
	org, node, ok = strings.Cut(rest, memberPathInfix)
	if !ok || !ids.Organization.Match(org) || ValidateNodeID(node) != nil {
		return "", "", false
	}
	return org, node, true
}

// ValidateHost reports whether host is an IP address or a DNS name (letters,
// digits and hyphens in dot-separated labels of at most 63 characters, no
// leading or trailing hyphen, at most 253 characters in all). Ports,
// brackets, wildcards and trailing dots are refused.
func ValidateHost(host string) error {
	if net.ParseIP(host) != nil {
		return nil
	}
	if host == "" || len(host) > 253 {
		return fmt.Errorf("%w: %q", ErrInvalidHost, host)
	}
	for _, label := range strings.Split(host, ".") {
		if !validDNSLabel(label) {
			return fmt.Errorf("%w: %q is neither an ip address nor a dns name", ErrInvalidHost, host)
		}
	}
	return nil
}

func validDNSLabel(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for i := 0; i < len(label); i++ {
		c := label[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return true
}

// splitHosts validates hosts and sorts them into IP addresses and DNS names,
// dropping duplicates. DNS names are lower-cased.
func splitHosts(hosts []string) ([]net.IP, []string, error) {
	var ips []net.IP
	var names []string
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		if err := ValidateHost(h); err != nil {
			return nil, nil, err
		}
		if ip := net.ParseIP(h); ip != nil {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.ToLower(h)
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return ips, names, nil
}
