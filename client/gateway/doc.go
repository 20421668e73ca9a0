// Package gateway is the member side of trustfed: the library a member
// node embeds so that no cross-organisation message leaves or enters
// without a registry decision that allows it, with the decision's controls
// applied, signed by the sending node and checked by the receiving one.
//
// Outbound, Send asks for a decision (from a cache invalidated by the
// registry's event stream, or from the registry), refuses a DENY with the
// registry's reasons, applies the controls through a PayloadPolicy, runs
// the outbound Gate, seals a signed Envelope and delivers it (HTTPS with
// mutual TLS between member certificates by default).
//
// Inbound, Handler (or Receive) checks the envelope's sender certificate
// and signature, the registry's decision inside it (quorum certificate,
// pair, action, session, validity, not invalidated since), replays, the
// controls and the inbound Gate, and fails closed with a *RefusedError
// whose Code says why.
//
// Without a PayloadPolicy and Gates configured every payload is refused.
// docs/gateway.md explains how an organisation adopts it and
// docs/envelope.md the envelope byte for byte.
package gateway
