package indextest

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/localization/index"
)

// Histogram counts latencies in 1 µs buckets up to 100 ms; slower samples
// land in the last bucket.
type Histogram struct {
	buckets [100_000]int64
	n       int64
}

// Add records one latency.
func (h *Histogram) Add(d time.Duration) {
	i := d.Microseconds()
	if i >= int64(len(h.buckets)) {
		i = int64(len(h.buckets)) - 1
	}
	h.buckets[i]++
	h.n++
}

// Quantile returns the upper edge of the bucket holding quantile q (0..1).
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i, c := range h.buckets {
		seen += c
		if seen >= rank {
			return time.Duration(i+1) * time.Microsecond
		}
	}
	return time.Duration(len(h.buckets)) * time.Microsecond
}

// Count is the number of samples.
func (h *Histogram) Count() int64 { return h.n }

// BenchmarkLookup bulk-loads n synthetic entries into s (which must be empty
// and implement index.BulkLoader), then times one lookup per iteration. It
// reports the build time and the p50/p99 latency from a histogram; it does
// not assert them. Run with -benchtime=100000x for 100 000 lookups.
func BenchmarkLookup(b *testing.B, s index.Store, n int64) {
	ctx := context.Background()
	bl, ok := s.(index.BulkLoader)
	if !ok {
		b.Fatalf("%T cannot bulk load", s)
	}
	start := time.Now()
	loaded, err := bl.BulkLoad(ctx, Synthetic(n))
	if err != nil {
		b.Fatal(err)
	}
	build := time.Since(start)
	if loaded != n {
		b.Fatalf("loaded %d entries, want %d", loaded, n)
	}
	patients := uint64(n / 4)
	rng := rand.New(rand.NewPCG(1, 2))
	// Warm the connection pool and prepared statements outside the timing.
	for i := 0; i < 100; i++ {
		if _, err := s.Lookup(ctx, index.Query{Pseudonym: Pseudonym(uint64(i)), CareContext: CareContexts[0]}); err != nil {
			b.Fatal(err)
		}
	}
	h := new(Histogram)
	var hits int64
	b.ResetTimer()
	for b.Loop() {
		p := rng.Uint64N(patients)
		if rng.IntN(10) == 0 {
			p += patients // unknown patient: an empty answer
		}
		q := index.Query{Pseudonym: Pseudonym(p), CareContext: CareContexts[rng.IntN(len(CareContexts))]}
		t0 := time.Now()
		got, err := s.Lookup(ctx, q)
		h.Add(time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if len(got) > 0 {
			hits++
		}
	}
	b.StopTimer()
	b.ReportMetric(build.Seconds(), "build-s")
	b.ReportMetric(float64(h.Quantile(0.50).Microseconds()), "p50-µs")
	b.ReportMetric(float64(h.Quantile(0.99).Microseconds()), "p99-µs")
	b.Logf("%d entries built in %s; %d lookups (%d hits): p50 %s p99 %s",
		n, build.Round(time.Millisecond), h.Count(), hits, h.Quantile(0.50), h.Quantile(0.99))
}
