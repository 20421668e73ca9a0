package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"google.golang.org/protobuf/proto"
)

// BenchmarkScaleLeaderTasks measures the two leader tasks whose cost grows
// with the whole state (BENCHMARKS.md, "Scale"), on 1,000 organisations
// and 10k, 100k (and, with TRUSTFED_STATE_SCALE_MAX=1000000, 1M) active
// agreements between them:
//   - SweepDue: the sweeper's full scan (its first look of a term, then
//     one every 5 minutes: every agreement; nothing is due, so it scans
//     them all);
//   - SweepDueSince: what the leader's sweeper asks every second, a second
//     after a look that found nothing due (the time indexes since then);
//   - SweepDueSinceAfterImport: the same two seconds after every agreement
//     was activated (a bulk import): the first look after it, whose mark
//     predates the import, and the next, which skips what the first judged;
//   - Commitment: the trust-state commitment of every audit checkpoint
//     (kept incrementally: one SHA-256 of 2 KiB);
//   - FullCommitment: its full recomputation on every core (what a
//     restore adds), and VerifyStateHash: the same on one core (the
//     periodic check).
//
// The agreements are copies of one agreement applied for real, inserted
// into the store directly (a benchmark fixture, not a write path).
func BenchmarkScaleLeaderTasks(b *testing.B) {
	limit := scaleMax(b, 100_000)
	h, template := scaleFixture(b)
	have := 1
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		if n > limit {
			break
		}
		insertAgreements(h, template, "agr", have, n)
		have = n
		r := h.read()
		// A day after the agreements were made, a second after a look that
		// found nothing due.
		at := h.now.Add(24 * time.Hour)
		b.Run(fmt.Sprintf("agreements=%d/SweepDue", n), func(b *testing.B) {
			for b.Loop() {
				if r.SweepDue(at) {
					b.Fatal("nothing is due")
				}
			}
		})
		mark := SweepMark{Time: at.Add(-time.Second), Index: r.Index()}
		b.Run(fmt.Sprintf("agreements=%d/SweepDueSince", n), func(b *testing.B) {
			for b.Loop() {
				if r.SweepDueSince(mark, at) {
					b.Fatal("nothing is due")
				}
			}
		})
		// Right after a bulk import: every agreement was activated less
		// than SweepSkew ago. The first look after the import judges them
		// all; the next ones skip what that look judged.
		justAfter := agreementStart(template).AsTime().Add(2 * time.Second)
		for _, look := range []struct {
			name string
			mark SweepMark
		}{
			{"first", SweepMark{Time: justAfter.Add(-time.Second), Index: template.GetModifyIndex() - 1}},
			{"next", SweepMark{Time: justAfter.Add(-time.Second), Index: r.Index()}},
		} {
			b.Run(fmt.Sprintf("agreements=%d/SweepDueSinceAfterImport/%s", n, look.name), func(b *testing.B) {
				for b.Loop() {
					if r.SweepDueSince(look.mark, justAfter) {
						b.Fatal("nothing is due")
					}
				}
			})
		}
		b.Run(fmt.Sprintf("agreements=%d/Commitment", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := r.Commitment(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("agreements=%d/FullCommitment", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := r.FullCommitment(); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("agreements=%d/VerifyStateHash", n), func(b *testing.B) {
			for b.Loop() {
				if err := r.VerifyStateHash(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The sweeper's memo answers as partyBreaksTerms does, per organisation and
// per condition: the same organisation (level 2) breaks an agreement with
// minimum level 3 and keeps one with minimum level 2, whatever is asked first.
func TestPartyMemoKeepsEachConditionApart(t *testing.T) {
	h := newHarness(t)
	h.accredit()
	h.member("org-a", 2, 2)
	h.member("org-b", 3, 3)
	r := h.read()
	strict := &trustfedv1.AgreementTerms{Termination: &trustfedv1.TerminationConditions{MinLevel: 3}}
	loose := &trustfedv1.AgreementTerms{Termination: &trustfedv1.TerminationConditions{MinLevel: 2}}
	for _, order := range [][]*trustfedv1.AgreementTerms{{strict, loose}, {loose, strict}} {
		memo := newPartyMemo(r)
		for range 2 { // the second round is answered from the memo
			for _, terms := range order {
				for _, org := range []string{"org-a", "org-b", "org-gone"} {
					wantReason, want := r.partyBreaksTerms(org, terms, h.now)
					gotReason, got := memo.breaks(org, terms, h.now)
					require.Equal(t, want, got, "%s, min level %d", org, terms.Termination.MinLevel)
					require.Equal(t, wantReason, gotReason)
				}
			}
		}
	}
	_, broken := r.partyBreaksTerms("org-a", strict, h.now)
	require.True(t, broken, "the fixture: org-a is below 3")
	_, broken = r.partyBreaksTerms("org-a", loose, h.now)
	require.False(t, broken, "the fixture: org-a meets 2")
}

// BenchmarkScaleHeapPerAgreement reports the Go heap one active agreement
// (its record and its edges in the state's indexes) keeps live, at 100k
// agreements (TRUSTFED_STATE_SCALE_MAX raises it): the in-memory part of
// a node's RSS at scale. The rest is the Raft log and audit log's bbolt
// files, mapped into memory (RssFile, not heap).
func BenchmarkScaleHeapPerAgreement(b *testing.B) {
	n := scaleMax(b, 100_000)
	h, template := scaleFixture(b)
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	round := 0
	for b.Loop() {
		round++
		before := heap()
		insertAgreements(h, template, fmt.Sprintf("agr-%02d", round), 1, n)
		after := heap()
		b.ReportMetric(float64(after-before)/float64(n-1), "heap-B/agreement")
		b.ReportMetric(float64(proto.Size(template)), "proto-B/agreement")
	}
}

// BenchmarkScaleHeapPerAgreementRestored is BenchmarkScaleHeapPerAgreement
// for the form a node holds after a restart or a join: the state restored
// from a snapshot (each row unmarshalled, then compacted by the restore).
// It compares the live heap of a restored state with 100k agreements
// (TRUSTFED_STATE_SCALE_MAX raises it) to that of the fixture's with one.
func BenchmarkScaleHeapPerAgreementRestored(b *testing.B) {
	n := scaleMax(b, 100_000)
	h, template := scaleFixture(b)
	persist := func() []byte {
		snap, err := h.fsm.Snapshot()
		require.NoError(b, err)
		var buf bytes.Buffer
		require.NoError(b, snap.Persist(&buf))
		return buf.Bytes()
	}
	one := persist()
	insertAgreements(h, template, "agr", 1, n)
	many := persist()
	restored := func(snap []byte) uint64 {
		f := NewFSM(NewStore(), nil, nil)
		before := liveHeap()
		require.NoError(b, f.Restore(bytes.NewReader(snap)))
		after := liveHeap()
		runtime.KeepAlive(f)
		return after - before
	}
	for b.Loop() {
		base, all := restored(one), restored(many)
		b.ReportMetric(float64(all-base)/float64(n-1), "heap-B/agreement")
	}
}

// BenchmarkScaleRestore times FSM.Restore of a snapshot with 100k active
// agreements (TRUSTFED_STATE_SCALE_MAX raises it): what a restarted or
// joining node spends before it can apply (decoding the rows, inserting
// them into go-memdb, recomputing the state hash).
func BenchmarkScaleRestore(b *testing.B) {
	n := scaleMax(b, 100_000)
	h, template := scaleFixture(b)
	insertAgreements(h, template, "agr", 1, n)
	snap, err := h.fsm.Snapshot()
	require.NoError(b, err)
	var buf bytes.Buffer
	require.NoError(b, snap.Persist(&buf))
	want, err := h.read().Commitment()
	require.NoError(b, err)
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		f := NewFSM(NewStore(), nil, nil)
		require.NoError(b, f.Restore(bytes.NewReader(buf.Bytes())))
		b.StopTimer()
		got, err := f.store.Read().Commitment()
		require.NoError(b, err)
		require.Equal(b, want, got, "the restored state commits to the snapshot's")
		b.StartTimer()
	}
}

// BenchmarkAgreementLookups times the agreement reads of the check path
// (LatestAgreement: Evaluate's; ActiveAgreement: a session's and a
// signature's) and an organisation's listing, among 100k active agreements
// and one terminated one.
func BenchmarkAgreementLookups(b *testing.B) {
	h, template := scaleFixture(b)
	insertAgreements(h, template, "agr", 1, 100_000)
	termination, sig := h.fed.Termination("org-0000", "agr-0000000000000000", "done")
	h.must(&commandv1.TerminateAgreement{Termination: termination, Signature: sig})
	r := h.read()
	// org-0005 and org-0006 have an active agreement (agr-...0005);
	// org-0000 and org-0001 only the terminated template.
	if _, ok := r.ActiveAgreement("org-0005", "org-0006"); !ok {
		b.Fatal("the fixture: no active agreement between org-0005 and org-0006")
	}
	b.Run("LatestAgreement/active", func(b *testing.B) {
		for b.Loop() {
			if ag, ok := r.LatestAgreement("org-0006", "org-0005"); !ok || ag.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
				b.Fatal("want the active agreement")
			}
		}
	})
	b.Run("LatestAgreement/terminated", func(b *testing.B) {
		for b.Loop() {
			if ag, ok := r.LatestAgreement("org-0000", "org-0001"); !ok || ag.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_TERMINATED {
				b.Fatal("want the terminated agreement")
			}
		}
	})
	b.Run("LatestAgreement/none", func(b *testing.B) {
		for b.Loop() {
			if _, ok := r.LatestAgreement("org-0000", "org-0500"); ok {
				b.Fatal("want none")
			}
		}
	})
	b.Run("Agreements/org", func(b *testing.B) {
		for b.Loop() {
			if ags, _ := r.Agreements("org-0005", "", 1000); len(ags) == 0 {
				b.Fatal("want org-0005's agreements")
			}
		}
	})
}

func liveHeap() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// scaleOrgs is how many organisations the scale fixture's agreements are
// spread over.
const scaleOrgs = 1000

// scaleMax is TRUSTFED_STATE_SCALE_MAX, or def when unset.
func scaleMax(b *testing.B, def int) int {
	s := os.Getenv("TRUSTFED_STATE_SCALE_MAX")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		b.Fatalf("TRUSTFED_STATE_SCALE_MAX: %q: %v", s, err)
	}
	return n
}

// scaleFixture is a state with scaleOrgs members and one agreement applied
// for real, returned as the template the scale benchmarks copy.
func scaleFixture(b *testing.B) (*harness, *trustfedv1.Agreement) {
	h := newHarness(b)
	h.accredit()
	for i := range scaleOrgs {
		h.member(fmt.Sprintf("org-%04d", i), 3, 3)
	}
	h.agreement("agr-0000000000000000", "org-0000", "org-0001", 2)
	template, ok := h.read().Agreement("agr-0000000000000000")
	if !ok || template.Status != trustfedv1.AgreementStatus_AGREEMENT_STATUS_ACTIVE {
		b.Fatal("the template agreement is not active")
	}
	return h, template
}

// insertAgreements inserts copies of template numbered [from, to) (ids
// prefix-%016x) between the fixture's organisations, into the store
// directly, in one transaction (a benchmark fixture, not a write path),
// keeping the state hash as Apply does.
func insertAgreements(h *harness, template *trustfedv1.Agreement, prefix string, from, to int) {
	tx := h.fsm.store.db.Load().Txn(true)
	tx.TrackChanges()
	for i := from; i < to; i++ {
		ag := proto.CloneOf(template)
		ag.Id = fmt.Sprintf("%s-%016x", prefix, i)
		ag.OrganizationAId, ag.OrganizationBId = fmt.Sprintf("org-%04d", i%scaleOrgs), fmt.Sprintf("org-%04d", (i/scaleOrgs+i+1)%scaleOrgs)
		mustDo(tx.Insert(tableAgreements, ag))
		mustDo(addEdges(tx, ag.OrganizationAId, ag.OrganizationBId, ag.Id))
	}
	mustDo(foldChanges(tx, &rowHasher{}))
	tx.Commit()
}

// BenchmarkScaleHeapPerMemberNode reports the Go heap one member node keeps
// live in the state (its row in the member nodes table and its two index
// entries, id and public key), at 100k nodes (TRUSTFED_STATE_SCALE_MAX
// raises it) spread over the fixture's organisations: as written (copies of
// a node enrolled and certified for real) and as restored from a snapshot.
func BenchmarkScaleHeapPerMemberNode(b *testing.B) {
	n := scaleMax(b, 100_000)
	h, _ := scaleFixture(b)
	h.must(h.enrolment("org-0000", "node-0", newNodeKey(b)))
	h.must(h.issue("org-0000", "node-0", h.nonce()))
	template, ok := first[*trustfedv1.MemberNode](h.read().txn, tableMemberNodes, "id", "org-0000", "node-0")
	if !ok || template.LastCertificateSerial == "" {
		b.Fatal("the template node is not enrolled and certified")
	}
	persist := func() []byte {
		snap, err := h.fsm.Snapshot()
		require.NoError(b, err)
		var buf bytes.Buffer
		require.NoError(b, snap.Persist(&buf))
		return buf.Bytes()
	}
	restored := func(snap []byte) uint64 {
		f := NewFSM(NewStore(), nil, nil)
		before := liveHeap()
		require.NoError(b, f.Restore(bytes.NewReader(snap)))
		after := liveHeap()
		runtime.KeepAlive(f)
		return after - before
	}
	one := persist()
	for b.Loop() {
		before := liveHeap()
		tx := h.fsm.store.db.Load().Txn(true)
		for i := 1; i < n; i++ {
			node := proto.CloneOf(template)
			node.OrganizationId, node.NodeId = fmt.Sprintf("org-%04d", i%scaleOrgs), fmt.Sprintf("node-%d", i)
			node.PublicKey = binary.BigEndian.AppendUint64(bytes.Clone(node.PublicKey[:24]), uint64(i))
			mustDo(tx.Insert(tableMemberNodes, node))
		}
		tx.Commit()
		after := liveHeap()
		b.ReportMetric(float64(after-before)/float64(n-1), "heap-B/node")
		b.ReportMetric(float64(restored(persist())-restored(one))/float64(n-1), "restored-heap-B/node")
		b.ReportMetric(float64(proto.Size(template)), "proto-B/node")
	}
}
