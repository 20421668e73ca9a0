// Package faults is the test-only half of trustfed's fault testing that
// needs no server: a sequential model of the registry operations the fault
// workload performs, a recorder of concurrent histories (invoke and
// complete times, unknown outcomes), and a linearizability check of those
// histories with porcupine that saves a failing history, its seed and
// porcupine's HTML visualisation as an artefact. The harness that drives
// real server processes (kills, pauses, partitions, a full disk) lives in
// system_test; see docs/reliability.md.
package faults
