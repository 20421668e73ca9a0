package state

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/encoding/protodelim"
)

// A snapshot whose rows fail to insert far into the stream (the decoder
// then several batches ahead) is refused with the record's number, and the
// state is kept; so is one whose stream breaks off mid-record, and one that
// ends without an audit head but is otherwise whole restores.
func TestRestoreRefusesABadRecordAfterManyGoodOnes(t *testing.T) {
	const good = 5 * restoreBatch
	stream := func(bad *commandv1.SnapshotRecord) []byte {
		var buf bytes.Buffer
		_, err := protodelim.MarshalTo(&buf, &commandv1.SnapshotHeader{Version: snapshotVersion, Index: 7})
		require.NoError(t, err)
		for i := range 2 * good {
			if i == good && bad != nil {
				_, err = protodelim.MarshalTo(&buf, bad)
				require.NoError(t, err)
			}
			id := fmt.Sprintf("org-%06d", i)
			_, err = protodelim.MarshalTo(&buf, &commandv1.SnapshotRecord{Record: &commandv1.SnapshotRecord_Organization{
				Organization: &trustfedv1.Organization{Id: id, Name: "Organisation " + id, DeclaredLevel: 3}}})
			require.NoError(t, err)
		}
		return buf.Bytes()
	}

	h := newHarness(t)
	h.accredit()
	h.member("org-a", 3, 3)
	kept := h.snapshotBytes()

	err := h.fsm.Restore(bytes.NewReader(stream(&commandv1.SnapshotRecord{})))
	require.ErrorContains(t, err, fmt.Sprintf("restore snapshot record %d: empty snapshot record", good))
	require.Equal(t, kept, h.snapshotBytes(), "a refused restore keeps the state")

	whole := stream(nil)
	err = h.fsm.Restore(bytes.NewReader(whole[:len(whole)-3]))
	require.ErrorContains(t, err, fmt.Sprintf("read snapshot record %d", 2*good-1))
	require.Equal(t, kept, h.snapshotBytes(), "a refused restore keeps the state")

	require.NoError(t, h.fsm.Restore(bytes.NewReader(whole)))
	r := h.read()
	require.Equal(t, uint64(7), r.Index())
	orgs := 0
	for page := ""; ; {
		list, next := r.Organizations(page, 1000)
		orgs += len(list)
		if next == "" {
			break
		}
		page = next
	}
	require.Equal(t, 2*good, orgs, "every row restored")
}
