// Package registry implements the trustfed API: the gRPC services
// (RegistryService, AdminService, ClusterService and the server-to-server
// PeerService), the one interceptor chain that authenticates, authorises and
// forwards every call, and the REST/JSON gateway in front of them.
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
