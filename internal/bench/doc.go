// Package bench is the load generator behind `trustfed bench`: it starts a
// loopback cluster of trustfed server processes or targets a running one,
// preloads organisations, agreements and member nodes through the admin
// quorum, runs callers over a fixed set of gRPC connections for a duration,
// and reports throughput, latency quantiles, errors by gRPC code and the
// servers' CPU per operation (from their /metrics) as one JSON object.
//
// Everything it talks to is real: server processes of the same binary,
// gRPC over TLS, member certificates issued by the registry.
package bench
