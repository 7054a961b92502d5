package consult

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// BenchmarkConsult measures one complete BgZ consult over mTLS: token,
// every query, and a consent question per query, either asked of the
// consent service each time (uncached) or answered from the holder's
// consent cache.
func BenchmarkConsult(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a consent service and a holder node")
	}
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"uncached", 0}, {"cached", time.Minute}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.ttl)
			ctx := context.Background()
			req := e.request(0)
			if _, err := e.requester.Consult(ctx, uraRequester, req); err != nil { // warm connections and cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				res, err := e.requester.Consult(ctx, uraRequester, req)
				if err != nil {
					b.Fatal(err)
				}
				if !res.Complete || res.Queries[0].Status != http.StatusOK {
					b.Fatalf("incomplete consult: %+v", res.Queries[0])
				}
			}
		})
	}
}
