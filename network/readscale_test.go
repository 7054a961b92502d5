package network

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkReadConcurrency reads one Patient at a time through the node's
// internal FHIR API (participant token, a durable audit record per read)
// with c = 1, 4 and 16 clients, each waiting for its answer before the next
// read. With $SCHAKEL_BENCH_PEER_FHIR set to the URL of one resource on
// another FHIR server (e.g. one without durable audit), the same loop runs
// against it, so the two can be compared in one run. ns/op is wall time
// per read over all clients; p50/p99 are per read as a client sees it.
func BenchmarkReadConcurrency(b *testing.B) {
	nw := startNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: hc}
	var found struct {
		Entry []struct {
			Resource struct{ ID string } `json:"resource"`
		} `json:"entry"`
	}
	q := "/internal/fhir/Patient?identifier=" + url.QueryEscape("http://fhir.nl/fhir/NamingSystem/bsn|"+nw.Patients[0].BSN)
	if err := gp.do(ctx, http.MethodGet, q, nil, &found); err != nil || len(found.Entry) != 1 {
		b.Fatalf("find the demo patient: %v (%d found)", err, len(found.Entry))
	}
	targets := []struct{ name, url, token string }{
		{"node", gp.base + "/internal/fhir/Patient/" + found.Entry[0].Resource.ID, gp.token},
	}
	if peer := os.Getenv("SCHAKEL_BENCH_PEER_FHIR"); peer != "" {
		targets = append(targets, struct{ name, url, token string }{"peer", peer, ""})
	}
	for _, t := range targets {
		read := func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
			if err != nil {
				return err
			}
			req.Header.Set("Accept", "application/fhir+json")
			if t.token != "" {
				req.Header.Set("Authorization", "Bearer "+t.token)
			}
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", t.url, resp.Status)
			}
			return nil
		}
		for _, c := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("%s/c=%d", t.name, c), func(b *testing.B) {
				for range c { // warm a connection per client
					if err := read(); err != nil {
						b.Fatal(err)
					}
				}
				records0, batches0 := auditStats(nw)
				var (
					next atomic.Int64
					wg   sync.WaitGroup
					mu   sync.Mutex
					lat  = make([]time.Duration, 0, b.N)
					ferr atomic.Pointer[error]
				)
				b.ResetTimer()
				for range c {
					wg.Add(1)
					go func() {
						defer wg.Done()
						own := make([]time.Duration, 0, b.N/c+1)
						for next.Add(1) <= int64(b.N) {
							t0 := time.Now()
							if err := read(); err != nil {
								ferr.CompareAndSwap(nil, &err)
								return
							}
							own = append(own, time.Since(t0))
						}
						mu.Lock()
						lat = append(lat, own...)
						mu.Unlock()
					}()
				}
				wg.Wait()
				b.StopTimer()
				if err := ferr.Load(); err != nil {
					b.Fatal(*err)
				}
				slices.Sort(lat)
				q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
				b.ReportMetric(q(0.50), "p50-µs")
				b.ReportMetric(q(0.99), "p99-µs")
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
				if t.name == "node" {
					reportAudit(b, nw, records0, batches0)
				}
			})
		}
	}
}
