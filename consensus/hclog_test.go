package consensus

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"
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
