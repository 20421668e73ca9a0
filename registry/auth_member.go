package registry

import (
	"crypto/x509"
	"fmt"

	"github.com/trustfed/trustfed/registry/state"
)

// fromMemberCert authenticates a member node by its verified client
// certificate (spiffe://trustfed/org/<org>/member/<node>) against the state
// r: the organisation must be ACTIVE, the node enrolled and not removed, and
// the certificate's key the node's enrolled key.
func (a authenticator) fromMemberCert(r *state.Reader, cert *x509.Certificate) (Principal, error) {
	_, _ = r, cert
	return Principal{}, fmt.Errorf("%w: member certificates are not accepted yet", ErrUnauthenticated)
}

// fromMember checks that org's member node is allowed in the state r (cert,
// if not nil, must carry the node's enrolled key) and returns its principal.
func (a authenticator) fromMember(r *state.Reader, org, node string, cert *x509.Certificate) (Principal, error) {
	_, _ = r, cert
	return Principal{}, fmt.Errorf("%w: member %s/%s: member certificates are not accepted yet", ErrUnauthenticated, org, node)
}
