package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/trustfed/trustfed/internal/testutil"
	commandv1 "github.com/trustfed/trustfed/proto/trustfed/command/v1"
)

// BenchmarkApplyAdminChange applies one admin change per op (a declared
// level set by an admin quorum of one, on 100 members): the signature is
// re-verified, the organisation's row, the change record and the request
// id are written. The commands are signed before the timer starts.
func BenchmarkApplyAdminChange(b *testing.B) {
	h := newHarness(b)
	h.accredit()
	for i := range 100 {
		h.member(fmt.Sprintf("org-%04d", i), 3, 3)
	}
	raws := make([][]byte, b.N)
	for i := range raws {
		h.now = h.now.Add(time.Second)
		c := testutil.SetLevel(fmt.Sprintf("org-%04d", i%100), uint32(2+i/100%2))
		raw := testutil.ChangeBytes(b, c, h.now)
		env, err := Encode(&commandv1.ProposeAdminChange{Change: raw, Approval: alice.Approve(raw)}, EnvelopeMeta{RequestID: fmt.Sprintf("req-%d", i), Time: h.now, Principal: "token:test"})
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = env
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if res := h.applyRaw(raws[i]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

// BenchmarkViewAtOrBefore is the look-up a decision batch makes on the
// apply goroutine for each state its statements were read at, in a full
// ring of keepViews views: the newest view, and one 16 commands older.
func BenchmarkViewAtOrBefore(b *testing.B) {
	f := NewFSM(NewStore(), nil, nil)
	txn := f.store.db.Load().Txn(false)
	for i := range uint64(keepViews) {
		f.views.push(txn, i+1, 1)
	}
	for _, back := range []uint64{0, 16} {
		b.Run(fmt.Sprintf("back=%d", back), func(b *testing.B) {
			for b.Loop() {
				if _, ok := f.viewAtOrBefore(keepViews - back); !ok {
					b.Fatal("the view is kept")
				}
			}
		})
	}
}
