package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type node struct{ addr string }

func (n *node) String() string { return "Node at " + n.addr }

func TestUniqueKeysAndPrintableValues(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(Unique(slog.NewJSONHandler(&buf, nil)))
	l = UniqueLogger(l) // wrapping twice changes nothing
	l.With("component", "registry", "node", "n1").With("component", "audit").
		Info("entering candidate state", "node", &node{"127.0.0.1:1"}, "node", "again", "err", errors.New("boom"))
	l.WithGroup("g").With("a", 1).Info("grouped", "a", 2)

	out := buf.String()
	require.NoError(t, CheckJSONLines(strings.NewReader(out)))
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2)
	require.Contains(t, lines[0], `"component":"audit","node":"n1"`)
	require.Contains(t, lines[0], `"node_2":"Node at 127.0.0.1:1","node_3":"again","err":"boom"`)
	require.Contains(t, lines[1], `"g":{"a":1,"a_2":2}`)
}

func TestCheckJSONLinesFindsRepeatsAndEmptyValues(t *testing.T) {
	require.ErrorContains(t, CheckJSONLines(strings.NewReader(`{"a":1,"a":2}`)), `key "a" repeated`)
	require.ErrorContains(t, CheckJSONLines(strings.NewReader(`{"a":1,"b":{"c":1,"c":1}}`)), `key "c" repeated`)
	require.ErrorContains(t, CheckJSONLines(strings.NewReader(`{"node":{}}`)), `empty object`)
	require.ErrorContains(t, CheckJSONLines(strings.NewReader(`[1]`)), `not a JSON object`)
	require.NoError(t, CheckJSONLines(strings.NewReader("{\"a\":[{\"b\":1}]}\n{\"a\":1}\n")))
}
