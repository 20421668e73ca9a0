package consensus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"
)

// StateMachine is the replicated, deterministic state. Apply is called from
// one goroutine in log order.
type StateMachine interface {
	// Apply applies one committed command. The result is handed back to the
	// proposer on the leader. It must be deterministic: same result and same
	// state change on every replica.
	Apply(index uint64, cmd []byte) any
	// Snapshot returns a point-in-time snapshot. It runs on the apply
	// goroutine, so it must be cheap; the expensive part belongs in Persist.
	Snapshot() (Snapshot, error)
	// Restore replaces the whole state with the snapshot read from r (it
	// never merges).
	Restore(r io.Reader) error
}

// BatchEnder is an optional StateMachine interface: EndBatch is called
// after every batch of entries Raft applies in one go, before their results
// are handed back and before the applied index moves, so a state machine can
// write what the batch produced in one transaction (group commit).
type BatchEnder interface {
	EndBatch()
}

// Snapshot is a point-in-time copy of a StateMachine. Persist may run
// concurrently with Apply. Release is always called, persisted or not.
type Snapshot interface {
	Persist(w io.Writer) error
	Release()
}

// LeaderClient is how a follower obtains a read index from the leader
// (implemented elsewhere over gRPC).
type LeaderClient interface {
	ReadIndex(ctx context.Context, leaderAPIAddr string) (uint64, error)
}

// Config configures a Node. Zero tuning values mean production defaults.
type Config struct {
	NodeID string
	// DataDir holds "raft.db" (bolt log + stable store, fsync on every
	// write) and "snapshots/" (file snapshot store, 2 retained).
	DataDir string
	// BindAddr is the raft TCP listen address, e.g. "127.0.0.1:0".
	BindAddr string
	// AdvertiseAddr is the raft address other nodes dial; default: the
	// bound listener address (which must then not be unspecified).
	AdvertiseAddr string
	// APIAddr is this node's gRPC API address. It is replicated so any
	// node can find the leader's API address.
	APIAddr string
	// Bootstrap: if there is no existing raft state, bootstrap a
	// single-voter cluster of this node.
	Bootstrap    bool
	StateMachine StateMachine
	// LeaderClient may be nil: then follower reads return ErrNotLeader.
	LeaderClient LeaderClient
	// Progress is how the leader asks a non-voter how far it has applied
	// the log before promoting it. nil: non-voters are never promoted.
	Progress ProgressClient
	// PromotionStabilization is how long a non-voter must stay caught up
	// before the leader promotes it to voter; 0 means 10s.
	PromotionStabilization time.Duration
	// TLS, if set, makes raft traffic use mutual TLS: the config serves as
	// server config (ClientAuth always RequireAndVerifyClientCert; ClientCAs
	// defaults to RootCAs) and as client config. MinVersion 0 means TLS 1.3;
	// below TLS 1.2 is refused. nil = plain TCP.
	TLS *tls.Config
	// VerifyPeer, if set (TLS only), checks the leaf certificate of every
	// raft peer once its chain verified, on accepted and dialed connections
	// alike; an error refuses the connection before raft sees it. The
	// consensus layer knows no identities: the caller decides which
	// certificates name a server node.
	VerifyPeer func(*x509.Certificate) error
	// OnRejectedConn, if set (TLS only), is told of every connection refused
	// at the TLS layer: accepted connections whose handshake failed or did
	// not complete in time (a client that connects and closes without
	// sending anything is not reported), connections refused because too
	// many handshakes are in progress, and dialed peers whose certificate
	// this node refused. It runs on the handshake's goroutine: it must not
	// block.
	OnRejectedConn func(remoteAddr string, err error)
	// Logger receives raft's and our logs; nil = slog.Default().
	Logger *slog.Logger

	HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout, CommitTimeout time.Duration
	SnapshotThreshold                                                    uint64
	SnapshotInterval                                                     time.Duration

	// TrailingLogs is how many log entries a snapshot leaves behind (0 =
	// Raft's default, 10240): fewer make compaction drop old entries (and
	// what they held) from raft.db sooner, and make lagging followers catch
	// up through InstallSnapshot.
	TrailingLogs uint64
	// handshakeTimeout overrides defaultHandshakeTimeout (tests).
	handshakeTimeout time.Duration
}

const (
	// defaultApplyTimeout bounds an Apply whose ctx has no deadline.
	defaultApplyTimeout = 10 * time.Second
	// enqueueTimeout bounds handing internal requests (barrier) to raft.
	enqueueTimeout = 10 * time.Second
	// snapshotsRetained is how many snapshots the file store keeps.
	snapshotsRetained = 2
	// logCacheSize is the number of recent entries kept in memory.
	logCacheSize = 512
	// notifyBuffer is the capacity of raft's leadership NotifyCh.
	notifyBuffer = 16
	// observeBuffer is the capacity of the heartbeat observation channel.
	observeBuffer = 256
	// transportMaxPool and transportTimeout tune the network transport.
	transportMaxPool = 3
	transportTimeout = 10 * time.Second
)

// validate checks the fields New needs; each error names the bad field.
func (c *Config) validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID is required"))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("DataDir is required"))
	}
	if err := CheckListenAddress(c.BindAddr); err != nil {
		errs = append(errs, fmt.Errorf("BindAddr %w", err))
	}
	if c.AdvertiseAddr != "" {
		if err := CheckAddress(c.AdvertiseAddr); err != nil {
			errs = append(errs, fmt.Errorf("AdvertiseAddr %w", err))
		}
	}
	if err := CheckAddress(c.APIAddr); err != nil {
		errs = append(errs, fmt.Errorf("APIAddr %w", err))
	}
	if c.StateMachine == nil {
		errs = append(errs, errors.New("StateMachine is required"))
	}
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil {
		errs = append(errs, errors.New("TLS has no certificate (Certificates or GetCertificate)"))
	}
	if c.TLS != nil && c.TLS.MinVersion != 0 && c.TLS.MinVersion < tls.VersionTLS12 {
		errs = append(errs, fmt.Errorf("TLS.MinVersion %s is below the floor, TLS 1.2", tls.VersionName(c.TLS.MinVersion)))
	}
	if c.TLS != nil && c.TLS.MaxVersion != 0 && c.TLS.MaxVersion < tls.VersionTLS12 {
		errs = append(errs, fmt.Errorf("TLS.MaxVersion %s is below the floor, TLS 1.2", tls.VersionName(c.TLS.MaxVersion)))
	}
	if c.TLS == nil && (c.VerifyPeer != nil || c.OnRejectedConn != nil) {
		errs = append(errs, errors.New("VerifyPeer and OnRejectedConn need TLS"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"HeartbeatTimeout", c.HeartbeatTimeout},
		{"ElectionTimeout", c.ElectionTimeout},
		{"LeaderLeaseTimeout", c.LeaderLeaseTimeout},
		{"CommitTimeout", c.CommitTimeout},
		{"SnapshotInterval", c.SnapshotInterval},
		{"PromotionStabilization", c.PromotionStabilization},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s must not be negative", d.name))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consensus config: %w", err)
	}
	return nil
}

// raftConfig builds raft's configuration from ours.
func (c *Config) raftConfig(logger *slog.Logger, notify chan<- bool) (*raft.Config, error) {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.NotifyCh = notify
	rc.Logger = newHCLogger(logger, "raft")
	if c.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = c.HeartbeatTimeout
	}
	if c.ElectionTimeout > 0 {
		rc.ElectionTimeout = c.ElectionTimeout
	}
	if c.LeaderLeaseTimeout > 0 {
		rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	}
	if c.CommitTimeout > 0 {
		rc.CommitTimeout = c.CommitTimeout
	}
	if c.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.SnapshotThreshold
	}
	if c.SnapshotInterval > 0 {
		rc.SnapshotInterval = c.SnapshotInterval
	}
	if c.TrailingLogs > 0 {
		rc.TrailingLogs = c.TrailingLogs
	}
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("consensus config: %w", err)
	}
	return rc, nil
}
