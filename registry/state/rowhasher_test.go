package state

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
)

// TestRowHasherVector: the row hasher's single-buffer expansion is the
// element's expansion as lthash.go defines it (uvarint(len(table)) ||
// table || the row's deterministic encoding, in pieces).
func TestRowHasherVector(t *testing.T) {
	row := &trustfedv1.Organization{Id: "org-a", Name: "Org A", DeclaredLevel: 3}
	enc, err := rowOptions.Marshal(row)
	require.NoError(t, err)
	var e ltExpander
	want := *e.expand(binary.AppendUvarint(nil, uint64(len(tableOrganizations))), []byte(tableOrganizations), enc)
	var rh rowHasher
	for range 2 { // the second time over a buffer already used
		got, err := rh.vector(tableOrganizations, row)
		require.NoError(t, err)
		require.Equal(t, want, *got)
	}
}
