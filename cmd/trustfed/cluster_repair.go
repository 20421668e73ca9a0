package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"github.com/trustfed/trustfed/registry"
)

// repairParts are what a repair moves aside, relative to the data dir: the
// Raft log and snapshots, the audit log and the divergence marker. The
// node's keys, certificates and addrs.json stay.
var repairParts = []string{"raft", "audit", registry.DivergenceMarker}

// repaired is what cluster repair did, for -o json.
type repaired struct {
	Aside    string   `json:"aside"`
	Moved    []string `json:"moved"`
	Diverged bool     `json:"diverged"`
	Index    uint64   `json:"divergedIndex,omitempty"`
	Reason   string   `json:"reason,omitempty"`
}

func newClusterRepairCmd(a *app) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "repair --data-dir DIR",
		Short: "Offline: discard a stopped server's Raft state and audit log (moved aside) so it rejoins from the leader's snapshot",
		Long: `Repair a STOPPED server whose state diverged from the cluster's (it
answers UNAVAILABLE "this node's state diverged…", /readyz 503,
trustfed_diverged 1). Its Raft log and snapshots, its audit log and the
divergence marker are moved into DIR/repair-<time>/ (never deleted: keep
them for the investigation). Start the server again as before: it has no
state, so the leader sends it a snapshot and the log after it, and it
re-derives its audit log from them. See docs/operations.md.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" {
				return usageErrorf("--data-dir is required")
			}
			out, err := repairDataDir(dataDir, time.Now())
			if err != nil {
				return err
			}
			if a.output == outputJSON {
				return writePlainJSON(a.stdout, out)
			}
			t := newTable(a.stdout)
			if out.Diverged {
				t.row("Diverged:", fmt.Sprintf("at index %d: %s", out.Index, out.Reason))
			}
			for _, m := range out.Moved {
				t.row("Moved:", m)
			}
			t.row("Into:", out.Aside)
			t.row("Next:", "start the server as before; it installs the leader's snapshot")
			return t.flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped server's data dir (required)")
	return cmd
}

// repairDataDir moves the parts a repair discards into a new directory of
// dataDir. It refuses a data dir without Raft state and one whose Raft log
// is open (the server still runs).
func repairDataDir(dataDir string, now time.Time) (repaired, error) {
	raftDB := filepath.Join(dataDir, "raft", "raft.db")
	if _, err := os.Stat(raftDB); err != nil {
		return repaired{}, fmt.Errorf("%s holds no Raft state (%s): nothing to repair: %w", dataDir, raftDB, err)
	}
	db, err := bolt.Open(raftDB, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		return repaired{}, fmt.Errorf("open %s (is the server still running? stop it first): %w", raftDB, err)
	}
	if err := db.Close(); err != nil {
		return repaired{}, fmt.Errorf("close %s: %w", raftDB, err)
	}
	out := repaired{Aside: filepath.Join(dataDir, "repair-"+now.UTC().Format("20060102T150405Z"))}
	d, err := registry.OpenDivergence(dataDir, slog.New(slog.DiscardHandler))
	if err != nil {
		return repaired{}, err
	}
	if m, ok := d.Status(); ok {
		out.Diverged, out.Index, out.Reason = true, m.Index, m.Reason
	}
	if err := os.Mkdir(out.Aside, 0o700); err != nil {
		return repaired{}, fmt.Errorf("make the directory to move the state into: %w", err)
	}
	for _, p := range repairParts {
		from := filepath.Join(dataDir, p)
		if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := os.Rename(from, filepath.Join(out.Aside, p)); err != nil {
			return out, fmt.Errorf("move %s aside: %w", from, err)
		}
		out.Moved = append(out.Moved, from)
	}
	return out, nil
}
