package state

import (
	"bytes"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// nextVersion copies every field of Agreement: each is set here (through
// the descriptor, so a field added to the message is set too) and must
// come back equal.
func TestNextVersionKeepsEveryField(t *testing.T) {
	ag := &trustfedv1.Agreement{}
	m := ag.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.Kind() == protoreflect.MessageKind:
			v := m.NewField(fd)
			if ts, ok := v.Message().Interface().(*timestamppb.Timestamp); ok {
				ts.Seconds = int64(1000 + i)
			} else if terms, ok := v.Message().Interface().(*trustfedv1.AgreementTerms); ok {
				terms.AgreementId = "agr-0000000000000001"
			}
			m.Set(fd, v)
		case fd.Kind() == protoreflect.StringKind:
			m.Set(fd, protoreflect.ValueOfString(string(fd.Name())))
		case fd.Kind() == protoreflect.BytesKind:
			m.Set(fd, protoreflect.ValueOfBytes([]byte(fd.Name())))
		case fd.Kind() == protoreflect.EnumKind:
			m.Set(fd, protoreflect.ValueOfEnum(1))
		case fd.Kind() == protoreflect.Uint64Kind:
			m.Set(fd, protoreflect.ValueOfUint64(uint64(7+i)))
		default:
			t.Fatalf("field %s of kind %s: extend this test", fd.Name(), fd.Kind())
		}
		require.Truef(t, m.Has(fd), "field %s is set", fd.Name())
	}
	require.True(t, proto.Equal(ag, nextVersion(ag)), "nextVersion drops a field:\n%v\n%v", ag, nextVersion(ag))
}

// Agreements are found by party through the edges (active ones) and the
// "inactive" index (pending and terminated ones): every lookup follows an
// agreement through its statuses, from either party.
func TestAgreementLookupsFollowStatus(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	for _, org := range []string{"org-a", "org-b", "org-c", "org-d"} {
		h.member(org, 3, 3)
	}
	ids := func(ags []*trustfedv1.Agreement) []string {
		var out []string
		for _, ag := range ags {
			out = append(out, ag.Id)
		}
		return out
	}
	inactiveEntries := func(org string) int {
		it, err := h.read().txn.Get(tableAgreements, "inactive", org)
		require.NoError(t, err)
		n := 0
		for raw := it.Next(); raw != nil; raw = it.Next() {
			n++
		}
		return n
	}

	// Pending.
	const ab = "agr-00000000000000ab"
	terms := h.terms(ab, "org-a", "org-b", 2)
	h.must(&commandv1.ProposeAgreement{Terms: terms})
	_, ok := h.read().ActiveAgreement("org-a", "org-b")
	require.False(t, ok, "pending is not active")
	for _, pair := range [][2]string{{"org-a", "org-b"}, {"org-b", "org-a"}} {
		ag, ok := h.read().LatestAgreement(pair[0], pair[1])
		require.True(t, ok, pair)
		require.Equal(t, ab, ag.Id)
	}
	require.Equal(t, 1, inactiveEntries("org-a"))

	// Active.
	h.must(&commandv1.SignAgreement{AgreementId: ab, OrganizationId: "org-a", Signature: h.fed.SignTerms("org-a", terms)})
	h.must(&commandv1.SignAgreement{AgreementId: ab, OrganizationId: "org-b", Signature: h.fed.SignTerms("org-b", terms)})
	for _, pair := range [][2]string{{"org-a", "org-b"}, {"org-b", "org-a"}} {
		ag, ok := h.read().ActiveAgreement(pair[0], pair[1])
		require.True(t, ok, pair)
		require.Equal(t, ab, ag.Id)
		ag, ok = h.read().LatestAgreement(pair[0], pair[1])
		require.True(t, ok, pair)
		require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE, ag.Status)
	}
	require.Equal(t, 0, inactiveEntries("org-a"), "an active agreement has no entry in the inactive index")
	_, ok = h.read().ActiveAgreement("org-a", "org-c")
	require.False(t, ok)

	// More agreements of org-a, in every status, to list and page.
	h.agreement("agr-00000000000000ac", "org-c", "org-a", 2)                                         // active, org-a second
	h.must(&commandv1.ProposeAgreement{Terms: h.terms("agr-000000000000000d", "org-a", "org-d", 2)}) // pending
	h.agreement("agr-00000000000000cd", "org-c", "org-d", 2)                                         // not org-a's
	all, next := h.read().Agreements("org-a", "", 10)
	require.Equal(t, []string{"agr-000000000000000d", "agr-00000000000000ab", "agr-00000000000000ac"}, ids(all))
	require.Empty(t, next)
	page1, next := h.read().Agreements("org-a", "", 2)
	require.Equal(t, []string{"agr-000000000000000d", "agr-00000000000000ab"}, ids(page1))
	require.Equal(t, "agr-00000000000000ab", next)
	page2, next := h.read().Agreements("org-a", next, 2)
	require.Equal(t, []string{"agr-00000000000000ac"}, ids(page2))
	require.Empty(t, next)
	everyone, _ := h.read().Agreements("", "", 10)
	require.Len(t, everyone, 4)

	// Terminated.
	termination, sig := h.fed.Termination("org-b", ab, "done")
	h.must(&commandv1.TerminateAgreement{Termination: termination, Signature: sig})
	_, ok = h.read().ActiveAgreement("org-b", "org-a")
	require.False(t, ok, "terminated is not active")
	ag, ok := h.read().LatestAgreement("org-b", "org-a")
	require.True(t, ok)
	require.Equal(t, trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED, ag.Status)
	all, _ = h.read().Agreements("org-a", "", 10)
	require.Equal(t, []string{"agr-000000000000000d", "agr-00000000000000ab", "agr-00000000000000ac"}, ids(all), "a terminated agreement is still listed")
	require.Equal(t, 2, inactiveEntries("org-a"))
}

// A restore makes an agreement's strings and timestamps shared as the
// write path's are, and changes nothing a snapshot (or the commitment)
// reads.
func TestRestoreSharesAgreementStrings(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("org-a", 3, 3)
	h.member("org-b", 3, 3)
	h.agreement("agr-00000000000000ab", "org-a", "org-b", 2)
	h.now = h.now.Add(time.Minute)
	snap := h.snapshotBytes()
	want, err := h.read().Commitment()
	require.NoError(t, err)

	fresh := newHarness(t)
	require.NoError(t, fresh.fsm.Restore(bytes.NewReader(snap)))
	require.Equal(t, snap, fresh.snapshotBytes(), "the restored state's snapshot is the same bytes")
	got, err := fresh.read().Commitment()
	require.NoError(t, err)
	require.Equal(t, want, got)

	r := fresh.read()
	ag, ok := r.Agreement("agr-00000000000000ab")
	require.True(t, ok)
	org, ok := r.Organization("org-a")
	require.True(t, ok)
	same := func(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }
	require.True(t, same(ag.OrganizationAId, org.Id), "the organisation id is the organisation row's")
	require.True(t, same(ag.ParsedTerms.AgreementId, ag.Id), "the parsed terms use the row's id")
	require.True(t, same(ag.ParsedTerms.OrganizationAId, org.Id))
	require.Same(t, ag.SignBTime, ag.UpdateTime, "the last signature's time is the update time")
	for _, p := range r.Graph("org-b") {
		require.True(t, same(p.OrganizationId, org.Id), "the edge's partner is the organisation row's id")
	}
}
