package consensus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/logging"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var l hclog.Logger = newHCLogger(base, "raft")

	l.Debug("hidden")
	require.Empty(t, buf.String())
	require.False(t, l.IsDebug())
	require.True(t, l.IsInfo())
	require.Equal(t, hclog.Info, l.GetLevel())

	l.Named("net").With("peer", "n2").Warn("dial failed", "servers", hclog.Fmt("%d nodes", 3))
	out := buf.String()
	require.Contains(t, out, "level=WARN")
	require.Contains(t, out, "logger=raft.net")
	require.Contains(t, out, "peer=n2")
	require.Contains(t, out, `servers="3 nodes"`)

	buf.Reset()
	l.SetLevel(hclog.Error)
	l.Warn("suppressed")
	require.Empty(t, buf.String())

	l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[ERR] boom")
	require.Contains(t, buf.String(), "level=ERROR")
	require.Contains(t, buf.String(), "msg=boom")
}

// TestJSONLogsHaveUniqueKeys runs a real node logging through the server's
// chain (a JSON handler, component=raft) and decodes every line it wrote:
// raft's own arguments ("node", r) and the adapter's context must not repeat
// a key, and no value may be an unprintable {}.
func TestJSONLogsHaveUniqueKeys(t *testing.T) {
	var sink logSink
	c := newCluster(t)
	c.logger = slog.New(slog.NewJSONHandler(&sink, &slog.HandlerOptions{Level: slog.LevelDebug})).With("component", "raft")
	n := c.start("n1", true)
	waitLeader(t, n)
	n.stop()

	sink.mu.Lock()
	out := sink.buf.String()
	sink.mu.Unlock()
	require.Contains(t, out, "entering candidate state") // the line that passes "node", r
	require.NoError(t, logging.CheckJSONLines(strings.NewReader(out)))
}
