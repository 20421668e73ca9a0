package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/consensus"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	peerv1 "github.com/trustfed/trustfed/proto/trustfed/peer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// streamLeader is a fake leader's AppendAuditStream: it appends each batch
// id once (like the state machine) and, while drop is set, appends a batch
// and then breaks the stream without answering it (the answer is lost).
type streamLeader struct {
	peerv1.UnimplementedPeerServiceServer
	mu      sync.Mutex
	log     []string // batch ids, in order
	drop    bool
	streams int
	unary   int
}

func (l *streamLeader) append(id string) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, got := range l.log {
		if got == id {
			return uint64(i + 1), false
		}
	}
	l.log = append(l.log, id)
	return uint64(len(l.log)), true
}

func (l *streamLeader) AppendAuditStream(s peerv1.PeerService_AppendAuditStreamServer) error {
	l.mu.Lock()
	l.streams++
	l.mu.Unlock()
	for {
		req, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		id := req.GetAudit().GetBatchId()
		seq, fresh := l.append(id)
		l.mu.Lock()
		drop := l.drop
		l.mu.Unlock()
		if drop {
			return status.Error(codes.Unavailable, "leader stepped down")
		}
		out := &peerv1.AppendAuditStreamResponse{BatchId: id, FirstSequence: seq, Index: 100 + seq}
		if !fresh {
			out.Code, out.Message = int32(codes.AlreadyExists), "already appended"
		}
		if err := s.Send(out); err != nil {
			return err
		}
	}
}

func (l *streamLeader) AppendAudit(_ context.Context, req *peerv1.AppendAuditRequest) (*peerv1.AppendAuditResponse, error) {
	l.mu.Lock()
	l.unary++
	l.mu.Unlock()
	seq, _ := l.append(req.GetAudit().GetBatchId())
	return &peerv1.AppendAuditResponse{FirstSequence: seq, Index: 100 + seq}, nil
}

// movingLeader is a Raft whose leader the test changes.
type movingLeader struct {
	directRaft
	mu      sync.Mutex
	leader  string
	changed chan struct{}
}

func newMovingLeader(id string) *movingLeader {
	return &movingLeader{leader: id, changed: make(chan struct{})}
}

func (m *movingLeader) IsLeader() bool { return false }

func (m *movingLeader) LeaderChanged(id string) <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id != m.leader {
		c := make(chan struct{})
		close(c)
		return c
	}
	return m.changed
}

func (m *movingLeader) move(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.leader = id
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *movingLeader) LeaderCall(ctx context.Context, id string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	changed := m.LeaderChanged(id)
	go func() {
		select {
		case <-changed:
			cancel(consensus.ErrLeaderChanged)
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// serveLeader serves srv on loopback and returns its address, with a
// Peers that reaches it without TLS.
func serveLeader(t *testing.T, peers *Peers, srv peerv1.PeerServiceServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	peerv1.RegisterPeerServiceServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	peers.mu.Lock()
	peers.conns[lis.Addr().String()] = conn
	peers.mu.Unlock()
	return lis.Addr().String()
}

func batchOf(id string) *commandv1.AppendAudit {
	return &commandv1.AppendAudit{BatchId: id, NodeId: "n2", Events: []*commandv1.AuditEvent{{Principal: "p"}}}
}

// Batches share one stream; a batch whose answer is lost with a broken
// stream fails retryably, and sent again under its batch id it is found
// appended once (errAuditBatchApplied), never appended twice.
func TestAuditStreamBrokenMidBatchAppendsOnce(t *testing.T) {
	peers := NewPeers(nil)
	fake := &streamLeader{}
	addr := serveLeader(t, peers, fake)
	raft := newMovingLeader("n1")
	streams := newAuditStreams(peers, raft, slog.New(slog.DiscardHandler))
	defer streams.Close()
	l := consensus.Server{ID: "n1", APIAddr: addr}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for i, id := range []string{"a", "b", "c"} {
		c, err := streams.append(ctx, l, batchOf(id), false)
		require.NoError(t, err)
		require.Equal(t, uint64(i+1), c.first)
	}
	require.Equal(t, 1, fake.streams, "one stream carries every batch")

	fake.mu.Lock()
	fake.drop = true
	fake.mu.Unlock()
	_, err := streams.append(ctx, l, batchOf("d"), false)
	require.Error(t, err)
	_, retry := unavailableReason(err)
	require.True(t, retry, "a lost answer is retried: %v", err)

	fake.mu.Lock()
	fake.drop = false
	fake.mu.Unlock()
	_, err = streams.append(ctx, l, batchOf("d"), false)
	require.ErrorIs(t, err, errAuditBatchApplied, "sent again, the batch is found appended")
	c, err := streams.append(ctx, l, batchOf("e"), false)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c", "d", "e"}, fake.log, "each batch appended once")
	require.Equal(t, uint64(5), c.first)
	require.Equal(t, 2, fake.streams, "a new stream after the broken one")
	require.Zero(t, fake.unary)
}

// A batch waiting on the stream to a leader that is no longer the leader
// fails retryably as soon as this node sees the change, and the next batch
// goes over a new stream to the new leader.
func TestAuditStreamFollowsLeaderChange(t *testing.T) {
	peers := NewPeers(nil)
	block := make(chan struct{})
	old := &blockingLeader{release: block, received: make(chan struct{})}
	oldAddr := serveLeader(t, peers, old)
	next := &streamLeader{}
	nextAddr := serveLeader(t, peers, next)
	raft := newMovingLeader("n1")
	streams := newAuditStreams(peers, raft, slog.New(slog.DiscardHandler))
	defer streams.Close()
	defer close(block)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	done := make(chan error, 1)
	go func() {
		_, err := streams.append(ctx, consensus.Server{ID: "n1", APIAddr: oldAddr}, batchOf("a"), false)
		done <- err
	}()
	<-old.received
	raft.move("n3")
	err := <-done
	require.ErrorIs(t, err, consensus.ErrLeaderChanged)

	c, err := streams.append(ctx, consensus.Server{ID: "n3", APIAddr: nextAddr}, batchOf("a"), false)
	require.NoError(t, err, "the batch goes again to the new leader")
	require.Equal(t, uint64(1), c.first)
	require.Equal(t, 1, next.streams)
}

// A leader without AppendAuditStream (an older server) gets the batch as
// one AppendAudit call, and is not asked for a stream again.
func TestAuditStreamFallsBackToUnary(t *testing.T) {
	peers := NewPeers(nil)
	addr := serveLeader(t, peers, &unaryLeader{})
	raft := newMovingLeader("n1")
	streams := newAuditStreams(peers, raft, slog.New(slog.DiscardHandler))
	defer streams.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := consensus.Server{ID: "n1", APIAddr: addr}
	_, err := streams.append(ctx, l, batchOf("a"), false)
	require.ErrorIs(t, err, errAuditStreamUnsupported)
	_, err = streams.append(ctx, l, batchOf("b"), false)
	require.ErrorIs(t, err, errAuditStreamUnsupported, "remembered: no second stream")
}

// blockingLeader receives batches and answers none until release.
type blockingLeader struct {
	peerv1.UnimplementedPeerServiceServer
	release  chan struct{}
	once     sync.Once
	received chan struct{}
}

func (b *blockingLeader) AppendAuditStream(s peerv1.PeerService_AppendAuditStreamServer) error {
	if _, err := s.Recv(); err != nil {
		return err
	}
	b.once.Do(func() { close(b.received) })
	select {
	case <-b.release:
	case <-s.Context().Done():
	}
	return nil
}

// unaryLeader serves only AppendAudit.
type unaryLeader struct {
	peerv1.UnimplementedPeerServiceServer
}

// The leader merges followers' batches only once every other server of
// the configuration has sent it a batch marked mergeable: an older server
// would apply a merged entry without remembering its parts.
func TestMergingWaitsForEveryServerToShowItApplyMergedEntries(t *testing.T) {
	a := newAuditStreams(nil, nil, nil)
	cfg := []consensus.Server{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}}
	require.False(t, a.mergeAllowed("n1", nil), "no configuration known")
	require.False(t, a.mergeAllowed("n1", cfg))
	a.sawMergeable("n2")
	require.False(t, a.mergeAllowed("n1", cfg), "n3 has not shown it yet")
	a.sawMergeable("n3")
	require.True(t, a.mergeAllowed("n1", cfg))
	require.False(t, a.mergeAllowed("n1", append(cfg, consensus.Server{ID: "n4"})), "a server that joined since")
}
