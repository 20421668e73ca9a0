// Package client is the Go SDK of trustfed, for member nodes and admin
// tools. It opens one gRPC connection to a registry node (TLS 1.3 against
// the federation CA, optionally with a node certificate), attaches a bearer
// token to every call, and exposes the generated clients of the public
// services over that connection: RegistryService (Registry), AdminService
// (Admin), ClusterService (Cluster), MembershipService (Membership),
// CascadeService (Cascades), AuditService (Audit) and AccessService
// (Access).
//
// Write requests that carry a request_id field get a random one when the
// caller left it empty. The id is written into the request message itself,
// so sending the same message again (for instance with RetryUnknown after a
// timeout or a lost connection) can never apply twice: the registry
// deduplicates by request_id.
//
// The package depends only on the API in proto/, attestation, the identifier
// formats of ids and gRPC; it never pulls in Raft.
package client
