package addressbook

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkReplicaSync is the mCSD sync of a directory of 10 000
// organisations with 2–4 endpoints each (40 000 resources) over mTLS on
// 127.0.0.1: the initial load into an empty replica, and an incremental
// sync that picks up 100 changed endpoints.
//
//	go test ./addressbook -run '^$' -bench ReplicaSync -benchmem
func BenchmarkReplicaSync(b *testing.B) {
	if testing.Short() {
		b.Skip("loads 40 000 resources")
	}
	const orgs = 10_000
	p := newPKI(b)
	d := startDirectory(b, p)
	ctx := context.Background()
	var entries []Entry
	resources := 0
	for i := range orgs {
		e := Entry{ID: fmt.Sprintf("org-%d", i), URA: fmt.Sprintf("9%07d", i), Name: fmt.Sprintf("Zorgaanbieder %d", i)}
		payloads := []string{PayloadNotification, PayloadBgZServer, PayloadAuthServer, PayloadClientJWKS}
		for j := range 2 + i%3 {
			e.Endpoints = append(e.Endpoints, EndpointSpec{ID: fmt.Sprintf("ep-%d-%d", i, j), PayloadType: payloads[j],
				Address: fmt.Sprintf("https://node%d.example/fhir/%d", i%50, j), FHIRVersion: "3.0"})
		}
		entries = append(entries, e)
		resources += 1 + len(e.Endpoints)
		if len(entries) == 1000 {
			if err := d.ab.Load(ctx, entries...); err != nil {
				b.Fatal(err)
			}
			entries = entries[:0]
		}
	}

	b.Run("initial", func(b *testing.B) {
		b.ReportAllocs()
		var versions int
		var elapsed time.Duration
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			r := d.replica(b, ReplicaConfig{Path: filepath.Join(b.TempDir(), fmt.Sprintf("r%d.db", i))})
			b.StartTimer()
			start := time.Now()
			st, err := r.Sync(ctx)
			elapsed += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if st.Upserted != resources {
				b.Fatalf("initial load upserted %d of %d", st.Upserted, resources)
			}
			versions += st.Versions
			b.StopTimer()
			r.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(versions)/elapsed.Seconds(), "resources/s")
	})

	b.Run("incremental-100", func(b *testing.B) {
		// The overlap re-read is left out: iterations follow each other
		// within milliseconds, where real syncs are minutes apart.
		r := d.replica(b, ReplicaConfig{Overlap: time.Millisecond})
		if _, err := r.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			for k := range 100 { // 100 organisations move their notification endpoint
				n := (i*100 + k) * 97 % orgs
				e := Entry{ID: fmt.Sprintf("org-%d", n), URA: fmt.Sprintf("9%07d", n), Endpoints: []EndpointSpec{{
					ID: fmt.Sprintf("ep-%d-0", n), PayloadType: PayloadNotification,
					Address: fmt.Sprintf("https://moved%d.example/fhir/Task", i), FHIRVersion: "3.0"}}}
				if err := d.ab.LoadResources(ctx, e.Resources()[1]); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			st, err := r.Sync(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if st.Upserted != 100 {
				b.Fatalf("incremental sync upserted %d, want 100", st.Upserted)
			}
		}
	})
}
