package state_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// TestSnapshotRecordsAreDelimitedProto: Persist frames each row itself
// (snapshot.go); the stream is, byte for byte, the records as protodelim
// writes them in deterministic encoding (how it wrote them before), read
// back and written again.
func TestSnapshotRecordsAreDelimitedProto(t *testing.T) {
	fed := testutil.NewFederation(t)
	a := newAuditedFSM(t, filepath.Join(t.TempDir(), "a.db"))
	var index uint64
	for _, raw := range append(script(t, fed), moreHistory(t, fed)...) {
		index++
		a.apply(index, raw)
	}
	snap, err := a.fsm.Snapshot()
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, snap.Persist(&buf))
	snap.Release()
	stream := buf.Bytes()

	br := bufio.NewReader(bytes.NewReader(stream))
	opts := protodelim.UnmarshalOptions{MaxSize: -1}
	write := protodelim.MarshalOptions{MarshalOptions: proto.MarshalOptions{Deterministic: true}}
	var again bytes.Buffer
	var hdr commandv1.SnapshotHeader
	require.NoError(t, opts.UnmarshalFrom(br, &hdr))
	_, err = write.MarshalTo(&again, &hdr)
	require.NoError(t, err)
	rows := 0
	for {
		var rec commandv1.SnapshotRecord
		err := opts.UnmarshalFrom(br, &rec)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		_, err = write.MarshalTo(&again, &rec)
		require.NoError(t, err)
		if rec.GetAuditHead() == nil && rec.GetAuditLeaf() == nil {
			rows++
		}
	}
	require.Greater(t, rows, 20)
	require.Equal(t, stream, again.Bytes())
}
