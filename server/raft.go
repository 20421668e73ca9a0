package server

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"time"

	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/trustfed/trustfed/attestation"
	"github.com/trustfed/trustfed/consensus"
	"github.com/trustfed/trustfed/registry"
	"github.com/trustfed/trustfed/registry/state"
)

// newNode starts this server's Raft node on the data dir.
func (s *Server) newNode(apiAddr string) (*consensus.Node, error) {
	ncfg := consensus.Config{
		NodeID:         s.cfg.NodeID,
		DataDir:        filepath.Join(s.cfg.DataDir, "raft"),
		BindAddr:       s.cfg.RaftAddr,
		AdvertiseAddr:  s.cfg.AdvertiseRaft,
		APIAddr:        apiAddr,
		Bootstrap:      s.cfg.Bootstrap,
		StateMachine:   stateMachine{s.fsm},
		LeaderClient:   s.peers,
		Progress:       s.peers,
		TLS:            s.tls.raft,
		VerifyPeer:     raftPeerIdentity,
		OnRejectedConn: s.refused.raftRefused,
		Logger:         s.logger.With("component", "raft"),
	}
	ncfg.SnapshotThreshold = s.cfg.SnapshotThreshold
	ncfg.TrailingLogs = s.cfg.TrailingLogs
	// Followers learn the commit index with the next AppendEntries; when
	// no new entry is coming, raft sends one after CommitTimeout (raft's
	// default 50 ms). A decision is answered once a quorum of replicas
	// applied its audit batch and vouched for it (registry/cosign.go); the
	// leader's commit nudge (consensus/nudge.go) tells them at once when
	// it is idle, and CommitTimeout (5 ms by default, -raft-commit-timeout,
	// for 100-200 empty AppendEntries a second per follower when idle) is
	// the bound when a nudge does not get through.
	ncfg.CommitTimeout = s.cfg.RaftCommitTimeout
	if s.cfg.RaftFastTimeouts {
		ncfg.HeartbeatTimeout, ncfg.ElectionTimeout = 300*time.Millisecond, 300*time.Millisecond
		// The lease is as long as the heartbeat timeout (production's is
		// half of it, 500 ms of 1 s): at 150 ms a leader on a loaded
		// machine stepped down whenever its process or a follower's went
		// without the CPU for that long, and the elections that followed
		// were most of a soak's missed checks. Reads and checks do not rely
		// on the lease (each takes a quorum round: consensus.ReadIndex), so
		// only how soon a cut-off leader steps down changes.
		ncfg.LeaderLeaseTimeout = 300 * time.Millisecond
		ncfg.PromotionStabilization = time.Second
		ncfg.SnapshotInterval = time.Second // how often the threshold is checked
	}
	node, err := consensus.New(ncfg)
	if err != nil {
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return node, nil
}

// stateMachine adapts the registry FSM to consensus.StateMachine.
type stateMachine struct{ *state.FSM }

func (s stateMachine) Snapshot() (consensus.Snapshot, error) { return s.FSM.Snapshot() }

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

// exportRaftMetrics publishes what hashicorp/raft and raft-boltdb measure
// themselves — commit time, FSM apply, log store writes (the fsync-bound
// part of every commit), replication, snapshots — on this server's
// /metrics, named hashicorp_raft_* (summaries in milliseconds). They report
// through go-metrics' process-wide sink (hashicorp/go-metrics/compat maps to
// armon/go-metrics), so this is set once per server process (the newest
// server of a process that runs several gets them); a series not updated
// for a minute (a leader-only timing after the node lost leadership) is
// dropped.
func exportRaftMetrics(reg prometheus.Registerer) error {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: time.Minute, Name: "hashicorp_raft_sink"})
	if err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	conf := gometrics.DefaultConfig("hashicorp")
	conf.EnableHostname = false       // one node per process: no host in the names
	conf.EnableRuntimeMetrics = false // the Go collector already reports the runtime
	if _, err := gometrics.NewGlobal(conf, sink); err != nil {
		return fmt.Errorf("raft metrics: %w", err)
	}
	return nil
}
