package revocation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"google.golang.org/protobuf/proto"
)

func TestPartners(t *testing.T) {
	fsm := state.NewFSM(state.NewStore(), nil)
	idx := uint64(0)
	apply := func(cmd proto.Message) {
		b, err := state.Encode(cmd, state.EnvelopeMeta{Time: time.Unix(1, 0)})
		require.NoError(t, err)
		idx++
		require.NoError(t, fsm.Apply(idx, b).(state.Result).Err)
	}
	for _, id := range []string{"hub", "p-one", "p-two", "p-three", "loner"} {
		apply(&commandv1.CreateOrganization{Organization: &trustfedv1.Organization{Id: id, Name: id}})
	}
	apply(&commandv1.CreateAgreement{Agreement: &trustfedv1.Agreement{Id: "agr-0000000000000001", OrganizationAId: "hub", OrganizationBId: "p-two"}})
	apply(&commandv1.CreateAgreement{Agreement: &trustfedv1.Agreement{Id: "agr-0000000000000002", OrganizationAId: "p-one", OrganizationBId: "hub"}})
	apply(&commandv1.CreateAgreement{Agreement: &trustfedv1.Agreement{Id: "agr-0000000000000003", OrganizationAId: "p-one", OrganizationBId: "p-three"}})

	r := fsm.Store().Read()
	require.Equal(t, []string{"p-one", "p-two"}, Partners(r, "hub"))
	require.Equal(t, []string{"hub", "p-three"}, Partners(r, "p-one"))
	require.Empty(t, Partners(r, "loner"))
}
