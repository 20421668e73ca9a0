package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/registry"
)

// limitFlags are the server's rate-limit and stream-cap flags.
type limitFlags struct {
	checks, writes, reads                float64
	checksBurst, writesBurst, readsBurst int
	watchStreams                         int
}

func (l *limitFlags) register(fs *flag.FlagSet) {
	d := registry.DefaultLimits()
	fs.Float64Var(&l.checks, "rate-checks", d.Checks.PerSecond, "CheckInteraction calls per second per caller on each node (0 = unlimited)")
	fs.IntVar(&l.checksBurst, "rate-checks-burst", d.Checks.Burst, "CheckInteraction calls a caller may make at once after being idle (bucket size)")
	fs.Float64Var(&l.writes, "rate-writes", d.Writes.PerSecond, "state-changing calls per second per caller on each node (0 = unlimited)")
	fs.IntVar(&l.writesBurst, "rate-writes-burst", d.Writes.Burst, "state-changing calls a caller may make at once after being idle (bucket size)")
	fs.Float64Var(&l.reads, "rate-reads", d.Reads.PerSecond, "other calls (reads, stream opens) per second per caller on each node (0 = unlimited)")
	fs.IntVar(&l.readsBurst, "rate-reads-burst", d.Reads.Burst, "other calls a caller may make at once after being idle (bucket size)")
	fs.IntVar(&l.watchStreams, "watch-streams-per-org", d.WatchStreamsPerOrg, "WatchEvents streams one organisation may hold open at once on each node (0 = unlimited)")
}

// resolve checks the flags and returns the registry's limits.
func (l limitFlags) resolve() (registry.Limits, error) {
	var errs []error
	for _, r := range []struct {
		name  string
		rate  float64
		burst int
	}{{"-rate-checks", l.checks, l.checksBurst}, {"-rate-writes", l.writes, l.writesBurst}, {"-rate-reads", l.reads, l.readsBurst}} {
		if r.rate < 0 || math.IsNaN(r.rate) || math.IsInf(r.rate, 0) {
			errs = append(errs, fmt.Errorf("%s %v: want a number of calls per second >= 0 (0 = unlimited)", r.name, r.rate))
		}
		if r.rate > 0 && r.burst < 1 {
			errs = append(errs, fmt.Errorf("%s-burst %d: want at least 1", r.name, r.burst))
		}
	}
	if l.watchStreams < 0 {
		errs = append(errs, fmt.Errorf("-watch-streams-per-org %d: want >= 0 (0 = unlimited)", l.watchStreams))
	}
	if err := errors.Join(errs...); err != nil {
		return registry.Limits{}, usageError{err}
	}
	return registry.Limits{
		Checks:             registry.Limit{PerSecond: l.checks, Burst: l.checksBurst},
		Writes:             registry.Limit{PerSecond: l.writes, Burst: l.writesBurst},
		Reads:              registry.Limit{PerSecond: l.reads, Burst: l.readsBurst},
		WatchStreamsPerOrg: l.watchStreams,
	}, nil
}

// raftPeerIdentity is the Raft transport's VerifyPeer: a peer's certificate
// (already verified against the cluster CA) must name a registry server,
// spiffe://trustfed/node/<id>. A member node's client certificate, or any
// other certificate the CA signed, cannot join or feed the cluster.
func raftPeerIdentity(cert *x509.Certificate) error {
	if _, ok := attestation.NodeIDFromCert(cert); !ok {
		return errors.New("certificate does not name a trustfed server node (spiffe://trustfed/node/<id>)")
	}
	return nil
}

// transportAudit hands the Raft transport's refused connections to the
// registry server for auditing once it exists (the node is created first);
// refusals before that are only logged by the transport.
type transportAudit struct {
	srv atomic.Pointer[registry.Server]
}

func (a *transportAudit) raftRefused(remoteAddr string, err error) {
	a.srv.Load().AuditTransportRefusal(registry.ListenerRaft, remoteAddr, err)
}
