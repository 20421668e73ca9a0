package state

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// signed is the agreement id between a and b with terms signed by both.
func (h *harness) signed(id, a, b string) *trustfedv1.SignedAgreement {
	terms := h.terms(id, a, b, 2)
	return &trustfedv1.SignedAgreement{Terms: terms, SignatureA: h.fed.SignTerms(a, terms), SignatureB: h.fed.SignTerms(b, terms)}
}

// importFixture is a harness with four member organisations; with same, its
// federation (keys) is same's, so signatures are the same bytes.
func importFixture(t *testing.T, same ...*harness) *harness {
	h := newHarness(t)
	if len(same) > 0 {
		h.fed = same[0].fed
	}
	h.accredit()
	for _, org := range []string{"org-a", "org-b", "org-c", "org-d"} {
		h.member(org, 3, 3)
	}
	return h
}

// An imported agreement is the row ProposeAgreement and the two
// SignAgreement commands make, edges included (but for the Raft index).
func TestImportAgreementsWritesWhatProposeAndSignWrite(t *testing.T) {
	h := importFixture(t)
	h.agreement("agr-00000000000000ab", "org-a", "org-b", 2)
	want, ok := h.read().Agreement("agr-00000000000000ab")
	require.True(t, ok)

	other := importFixture(t, h)
	other.must(&commandv1.ImportAgreements{Agreements: []*trustfedv1.SignedAgreement{
		other.signed("agr-00000000000000ab", "org-a", "org-b"),
		other.signed("agr-00000000000000cd", "org-c", "org-d"),
		other.signed("agr-00000000000000ac", "org-c", "org-a"),
	}})
	got, ok := other.read().Agreement("agr-00000000000000ab")
	require.True(t, ok)
	got = proto.CloneOf(got)
	got.CreateIndex, got.ModifyIndex = want.CreateIndex, want.ModifyIndex
	require.True(t, proto.Equal(want, got), "imported:\n%v\nproposed and signed:\n%v", got, want)
	for _, pair := range [][2]string{{"org-b", "org-a"}, {"org-d", "org-c"}, {"org-a", "org-c"}} {
		ag, ok := other.read().ActiveAgreement(pair[0], pair[1])
		require.True(t, ok, pair)
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, ag.Status)
	}
	partners := func(h *harness, org string) []string {
		var out []string
		for _, p := range h.read().Graph(org) {
			out = append(out, fmt.Sprintf("%s %v", p.OrganizationId, p.AgreementIds))
		}
		return out
	}
	require.Equal(t, partners(h, "org-b"), partners(other, "org-b"), "the same edges")
	require.Equal(t, []string{"org-b [agr-00000000000000ab]", "org-c [agr-00000000000000ac]"}, partners(other, "org-a"))
}

// A batch with one bad item is refused whole, naming the item and field;
// nothing of it is written.
func TestImportAgreementsAllOrNothing(t *testing.T) {
	for _, c := range []struct {
		name  string
		bad   func(h *harness) *trustfedv1.SignedAgreement
		kind  error
		field string
	}{
		{"a signature by the wrong key", func(h *harness) *trustfedv1.SignedAgreement {
			s := h.signed("agr-00000000000000cd", "org-c", "org-d")
			s.SignatureB = h.fed.SignTerms("org-a", s.Terms)
			return s
		}, ErrInvalidArgument, "agreements[1].signature_b"},
		{"no first signature", func(h *harness) *trustfedv1.SignedAgreement {
			s := h.signed("agr-00000000000000cd", "org-c", "org-d")
			s.SignatureA = nil
			return s
		}, ErrInvalidArgument, "agreements[1].signature_a"},
		{"the id of an earlier item", func(h *harness) *trustfedv1.SignedAgreement {
			return h.signed("agr-00000000000000ab", "org-c", "org-d")
		}, ErrAlreadyExists, "agreements[1].terms.agreement_id"},
		{"the pair of an earlier item", func(h *harness) *trustfedv1.SignedAgreement {
			return h.signed("agr-00000000000000ba", "org-b", "org-a")
		}, ErrFailedPrecondition, "agreements[1].terms.agreement_id"},
		{"an unknown party", func(h *harness) *trustfedv1.SignedAgreement {
			return h.signed("agr-00000000000000cd", "org-c", "org-zz")
		}, ErrNotFound, "agreements[1].terms.organization_b_id"},
		{"terms that do not parse", func(h *harness) *trustfedv1.SignedAgreement {
			return &trustfedv1.SignedAgreement{Terms: []byte{0xff, 0xff}}
		}, ErrInvalidArgument, "agreements[1].terms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := importFixture(t)
			res := h.apply(&commandv1.ImportAgreements{Agreements: []*trustfedv1.SignedAgreement{
				h.signed("agr-00000000000000ab", "org-a", "org-b"),
				c.bad(h),
				h.signed("agr-00000000000000ac", "org-a", "org-c"),
			}}, "")
			requireKind(t, res.Err, c.kind, c.field)
			ags, _ := h.read().Agreements("", "", 10)
			require.Empty(t, ags, "nothing of a refused batch is written")
			require.Empty(t, h.read().Graph("org-a"))
		})
	}
}

func TestImportAgreementsSize(t *testing.T) {
	h := importFixture(t)
	requireKind(t, h.apply(&commandv1.ImportAgreements{}, "").Err, ErrInvalidArgument, "agreements")
	many := make([]*trustfedv1.SignedAgreement, MaxImportAgreements+1)
	for i := range many {
		many[i] = &trustfedv1.SignedAgreement{}
	}
	requireKind(t, h.apply(&commandv1.ImportAgreements{Agreements: many}, "").Err, ErrInvalidArgument, "agreements")
}
