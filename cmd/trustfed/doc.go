// Command trustfed is the one trustfed binary: "trustfed server" runs a
// registry node; every other verb is a command-line client that talks gRPC
// over TLS to a node through the client package.
//
// Exit codes: 0 success (and ALLOW for "trustfed check"), 1 an error
// reported by the server or the environment, 2 a usage error, 3 DENY from
// "trustfed check".
package main
