package audit

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkAppend measures appending to the on-disk log (one fsync per
// batch: group commit), per entry of ~400 bytes.
func BenchmarkAppend(b *testing.B) {
	e := make([]byte, 400)
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l, err := Open(filepath.Join(b.TempDir(), "audit.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			entries := make([][]byte, batch)
			for i := range entries {
				entries[i] = e
			}
			b.SetBytes(int64(len(e)))
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				if _, _, err := l.Append(entries[:min(batch, b.N-i)]); err != nil {
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
		if _, _, err := l.Append(batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := l.InclusionProof(uint64(i)%l.Size(), l.Size()); err != nil {
			b.Fatal(err)
		}
	}
}
