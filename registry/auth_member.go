package registry

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/trustfed/trustfed/attestation"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
)

// fromMemberCert authenticates a member node by its verified client
// certificate (spiffe://trustfed/org/<org>/member/<node>) against the state
// r: the organisation must be ACTIVE, the node enrolled and not removed, and
// the certificate's key the node's enrolled key.
func (a authenticator) fromMemberCert(r *state.Reader, cert *x509.Certificate) (Principal, error) {
	org, node, ok := attestation.MemberFromCert(cert)
	if !ok {
		return Principal{}, fmt.Errorf("%w: the client certificate names neither a registry node nor a member node", ErrUnauthenticated)
	}
	// The handshake checked the validity period once; a connection lives
	// on, so every call checks it again.
	if a.clock != nil {
		if now := a.clock(); now.After(cert.NotAfter) {
			return Principal{ID: memberPrincipalID(org, node)}, fmt.Errorf("%w: member certificate %s expired at %s: reconnect with a renewed one",
				ErrUnauthenticated, cert.SerialNumber.Text(16), cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	return a.fromMember(r, org, node, cert)
}

// fromMember checks that org's member node is allowed in the state r (cert,
// if not nil, must carry the node's enrolled key) and returns its principal.
// Every check reads the current state, so a suspended or revoked
// organisation, a removed node or a re-enrolled key stops working on the
// next call, on every server.
func (a authenticator) fromMember(r *state.Reader, org, node string, cert *x509.Certificate) (Principal, error) {
	id := memberPrincipalID(org, node)
	o, ok := r.Organization(org)
	if !ok {
		return Principal{ID: id}, fmt.Errorf("%w: organization %s is not registered", ErrUnauthenticated, org)
	}
	if o.Status != trustfedv1.OrganizationStatus_ORGANIZATION_STATUS_ACTIVE {
		return Principal{ID: id}, fmt.Errorf("%w: organization %s is %s", ErrUnauthenticated, org, state.OrganizationStatusName(o.Status))
	}
	n, ok := r.MemberNode(org, node)
	if !ok {
		return Principal{ID: id}, fmt.Errorf("%w: member node %s of %s is not enrolled", ErrUnauthenticated, node, org)
	}
	if n.Status != trustfedv1.MemberNodeStatus_MEMBER_NODE_STATUS_ACTIVE {
		return Principal{ID: id}, fmt.Errorf("%w: member node %s of %s was removed", ErrUnauthenticated, node, org)
	}
	if cert != nil {
		pub, ok := cert.PublicKey.(ed25519.PublicKey)
		if !ok || !bytes.Equal(pub, n.PublicKey) {
			return Principal{ID: id}, fmt.Errorf("%w: the certificate's key is not the key enrolled for member node %s of %s", ErrUnauthenticated, node, org)
		}
	}
	return Principal{ID: id, Role: RoleMember, Organization: org, MemberNode: node}, nil
}
