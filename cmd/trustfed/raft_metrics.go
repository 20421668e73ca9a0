package main

import (
	"fmt"
	"time"

	gometrics "github.com/armon/go-metrics"
	gmprom "github.com/armon/go-metrics/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// exportRaftMetrics publishes what hashicorp/raft and raft-boltdb measure
// themselves — commit time, FSM apply, log store writes (the fsync-bound
// part of every commit), replication, snapshots — on this server's
// /metrics, named hashicorp_raft_* (summaries in milliseconds). They report
// through go-metrics' process-wide sink (hashicorp/go-metrics/compat maps to
// armon/go-metrics), so this is set once per server process; a series not
// updated for a minute (a leader-only timing after the node lost
// leadership) is dropped.
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
