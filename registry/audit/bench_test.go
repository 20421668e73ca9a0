package audit

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkAppendBatches measures appending to the on-disk log, per entry
// of ~400 bytes with 3 labels: each AppendBatches call is one Raft apply
// batch of `batch` commands producing one entry each (one transaction, one
// fsync: group commit). "nosync" is how the server keeps it (see
// Options.NoSync).
func BenchmarkAppendBatches(b *testing.B) {
	data := make([]byte, 400)
	orgs := make([]string, 100)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org:org%03d", i)
	}
	for _, bc := range []struct {
		batch  int
		noSync bool
	}{{1, false}, {64, false}, {512, false}, {512, true}} {
		name := fmt.Sprintf("batch=%d", bc.batch)
		if bc.noSync {
			name += "/nosync"
		}
		batch := bc.batch
		b.Run(name, func(b *testing.B) {
			l, err := OpenWith(filepath.Join(b.TempDir(), "audit.db"), Options{NoSync: bc.noSync})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			batches := make([]Batch, batch)
			leaves := make([]Leaf, batch)
			for i := range batches {
				batches[i].Leaves = leaves[i : i+1]
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for n := 0; n < b.N; n += batch {
				k := min(batch, b.N-n)
				for i := range k {
					seq := n + i
					leaves[i] = Leaf{
						Data:   data,
						Time:   t0.Add(time.Duration(seq) * time.Millisecond),
						Labels: []string{orgs[seq%len(orgs)], "type:DECISION", "mode:HIPAA"},
					}
					batches[i].LogIndex = uint64(seq + 1)
				}
				if _, err := l.AppendBatches(batches[:k]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInclusionProof measures a proof in a log of 100,000 entries.
func BenchmarkInclusionProof(b *testing.B) {
	l, err := Open(filepath.Join(b.TempDir(), "audit.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	e := make([]byte, 400)
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = e
	}
	for range 100 {
		appendEntries(b, l, batch)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.InclusionProof(uint64(i)%l.Size(), l.Size()); err != nil {
			b.Fatal(err)
		}
	}
}
