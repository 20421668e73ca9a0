package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DivergenceMarker is the file, in the data directory, that records that
// this node's state diverged from the cluster's. While it exists the node
// answers nothing (UNAVAILABLE, /readyz 503): a restart does not clear it,
// only a repair does (trustfed cluster repair, docs/operations.md).
const DivergenceMarker = "diverged.json"

// Diverged is what the marker records: the first index at which this node's
// state was found to differ from the cluster's, and how.
type Diverged struct {
	Index  uint64    `json:"index"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// Message is what every refused call says.
func (d Diverged) Message() string {
	return fmt.Sprintf("this node's state diverged from the cluster's at index %d: repair it, see docs/operations.md", d.Index)
}

// Divergence holds whether this node diverged, persisted in its data
// directory. Mark is safe to call from the Raft apply goroutine: it never
// blocks on the network.
type Divergence struct {
	path   string
	logger *slog.Logger
	mu     sync.Mutex // serialises Mark
	cur    atomic.Pointer[Diverged]
}

// OpenDivergence loads the marker of dataDir, if any. A marker that cannot
// be read counts as diverged: the node fails closed.
func OpenDivergence(dataDir string, logger *slog.Logger) (*Divergence, error) {
	if logger == nil {
		logger = slog.Default()
	}
	d := &Divergence{path: filepath.Join(dataDir, DivergenceMarker), logger: logger}
	b, err := os.ReadFile(d.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return d, nil
	case err != nil:
		return nil, fmt.Errorf("read the divergence marker: %w", err)
	}
	var m Diverged
	if err := json.Unmarshal(b, &m); err != nil {
		m = Diverged{Reason: fmt.Sprintf("the divergence marker %s is unreadable: %v", d.path, err)}
	}
	d.cur.Store(&m)
	logger.Error("this node's state diverged from the cluster's: it answers nothing until repaired", "index", m.Index, "reason", m.Reason, "marker", d.path)
	return d, nil
}

// Mark records that this node diverged at index. The first mark is kept;
// later ones only log.
func (d *Divergence) Mark(index uint64, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logger.Error("state diverged from the cluster's: this node stops answering until repaired", "index", index, "reason", reason)
	if d.cur.Load() != nil {
		return
	}
	m := &Diverged{Index: index, Reason: reason, Time: time.Now().UTC()}
	d.cur.Store(m)
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = os.WriteFile(d.path, append(b, '\n'), 0o600)
	}
	if err != nil {
		// Serving stays refused for this run; a restart would not know.
		d.logger.Error("could not persist the divergence marker", "path", d.path, "error", err)
	}
}

// Status is the divergence, if this node diverged. A nil Divergence never
// diverged.
func (d *Divergence) Status() (Diverged, bool) {
	if d == nil {
		return Diverged{}, false
	}
	if m := d.cur.Load(); m != nil {
		return *m, true
	}
	return Diverged{}, false
}

// refuseDiverged is the status every call gets while the node is diverged.
func (s *Server) refuseDiverged() error {
	if m, ok := s.cfg.Divergence.Status(); ok {
		return status.Error(codes.Unavailable, m.Message())
	}
	return nil
}
