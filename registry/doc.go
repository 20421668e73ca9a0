// Package registry implements the trustfed API: the gRPC services, the one
// interceptor chain that authenticates, authorises and forwards every call,
// and the REST/JSON gateway in front of them.
//
// Each service is its own struct in the file named after it, holding the
// shared core (*Server); Register registers them all:
//
//   - RegistryService (registry_service.go): interaction checks, dual
//     authorisation requests, organisations, the decision-signing keys.
//   - MembershipService (membership_service.go): an organisation's signed
//     registration, passports, agreements, approvals and webhooks.
//   - AdminService (admin_service.go): approvals, issuers, the federation
//     policy and the admin changes that need several admins.
//   - CascadeService (cascade_service.go): sessions, the organisation graph,
//     revocation cascades and their events.
//   - AuditService (audit_service.go): the audit log, its signed tree heads,
//     proofs and cosignatures.
//   - AccessService (access_service.go): bearer tokens and member nodes
//     (enrolment, challenge-response certificates).
//   - ClusterService (cluster_service.go, backup_service.go): status, join,
//     leave, backups (SaveSnapshot) and leadership transfer.
//   - PeerService (peer_service.go): the registry servers' own calls to
//     each other (read index, audit batches, progress).
//
// The services read the replicated state through the state package and reach
// Raft only through the narrow Raft interface declared here, which
// *consensus.Node satisfies.
//
// Every request goes through the same chain: authenticate (bearer token or
// node certificate), authorise (the method table in auth.go; a method not in
// the table is denied), forward writes to the leader when this node is not
// it (and checks presenting a dual authorisation, whose ALLOW takes one of
// its uses through Raft), then the handler; errors become gRPC statuses in
// toStatus only.
package registry
