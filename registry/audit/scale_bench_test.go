package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// BenchmarkScale grows one on-disk log through 10k, 100k, 1M and 10M
// entries, up to TRUSTFED_AUDIT_SCALE_MAX (the growth is not timed:
// batches of 4,096, no fsync), and at each size measures, per operation:
//   - append: one batch of 64 entries (a Raft apply batch) with fsync, per entry;
//   - inclusion: an inclusion proof for an entry spread over the log, against the current size;
//   - consistency: a consistency proof from a size spread over the log to the current size.
//
// At 10M it takes about two minutes and 5 GiB of temporary disk, so it
// runs only when TRUSTFED_AUDIT_SCALE_MAX is set (make bench-scale), not
// in make bench or make test:
//
//	TRUSTFED_AUDIT_SCALE_MAX=10000000 go test -run '^$' -bench BenchmarkScale -benchtime 2000x -timeout 30m -v ./registry/audit/
func BenchmarkScale(b *testing.B) {
	s := os.Getenv("TRUSTFED_AUDIT_SCALE_MAX")
	if s == "" {
		b.Skip("set TRUSTFED_AUDIT_SCALE_MAX (e.g. 10000000) to grow a log that large")
	}
	limit, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		b.Fatalf("TRUSTFED_AUDIT_SCALE_MAX: %q: %v", s, err)
	}
	sizes := []uint64{10_000, 100_000, 1_000_000, 10_000_000}
	for len(sizes) > 1 && sizes[len(sizes)-1] > limit {
		sizes = sizes[:len(sizes)-1]
	}
	path := filepath.Join(b.TempDir(), "audit.db")
	grow, err := OpenWith(path, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 400)
	orgs := make([]string, 100)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org:org%03d", i)
	}
	seq := uint64(0)
	appendN := func(l *Log, n, per int) {
		batches := make([]Batch, 0, n/per+1)
		leaves := make([]Leaf, n)
		for i := range leaves {
			leaves[i] = Leaf{Data: data, Time: t0.Add(time.Duration(seq+uint64(i)) * time.Millisecond),
				Labels: []string{orgs[(seq+uint64(i))%uint64(len(orgs))], "type:DECISION"}}
		}
		for i := 0; i < n; i += per {
			batches = append(batches, Batch{LogIndex: l.LastIndex() + 1 + uint64(len(batches)), Leaves: leaves[i:min(i+per, n)]})
		}
		if _, err := l.AppendBatches(batches); err != nil {
			b.Fatal(err)
		}
		seq += uint64(n)
	}
	for _, size := range sizes {
		t := time.Now()
		for l := grow; l.Size() < size; {
			appendN(l, int(min(4096, size-l.Size())), 4096)
		}
		b.Logf("grew the log to %d entries in %s (file %s)", size, time.Since(t).Round(time.Millisecond), fileSize(path))
		if err := grow.Close(); err != nil {
			b.Fatal(err)
		}
		l, err := Open(path) // fsync on every commit, as a single append measures it
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("entries=%d/append64", size), func(b *testing.B) {
			for range b.N {
				appendN(l, 64, 64)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*64), "µs/entry")
		})
		n := l.Size()
		b.Run(fmt.Sprintf("entries=%d/inclusion", size), func(b *testing.B) {
			for i := range b.N {
				if _, err := l.InclusionProof(uint64(i)*7919%n, n); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("entries=%d/consistency", size), func(b *testing.B) {
			for i := range b.N {
				if _, err := l.ConsistencyProof(1+uint64(i)*7919%(n-1), n); err != nil {
					b.Fatal(err)
				}
			}
		})
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		if grow, err = OpenWith(path, Options{NoSync: true}); err != nil {
			b.Fatal(err)
		}
	}
	if err := grow.Close(); err != nil {
		b.Fatal(err)
	}
}

func fileSize(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20))
}
