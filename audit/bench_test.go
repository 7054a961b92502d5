package audit

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
)

// BenchmarkAppendDurable measures Append with a durable commit (WAL fsync per
// transaction) under 8 concurrent writers on GOMAXPROCS 2 (SetParallelism 4),
// and reports how many records each transaction (one fsync) carried.
func BenchmarkAppendDurable(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		s := newBenchStore(b)
		ctx := context.Background()
		rec := record(0)
		b.SetParallelism(4)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.Append(ctx, rec); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		st := s.Stats()
		b.ReportMetric(float64(st.Records)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(st.Records)/float64(max(st.Batches, 1)), "records/batch")
	})
}

func newBenchStore(b *testing.B) *Store {
	key, err := ephemeralKey()
	if err != nil {
		b.Fatal(err)
	}
	s, err := OpenWith(context.Background(), Config{Path: filepath.Join(b.TempDir(), "audit.db"), Node: "bench", Key: key,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}
