package network

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/notifiedpull"
)

// BenchmarkNotifiedPull measures one complete BgZ Notified Pull between two
// nodes on loopback: the GP's system asks its node to refer, the node
// notifies the hospital (token + POST Task), the hospital's node gets a
// token with the authorization base, reads the workflow Task, runs all BgZ
// queries, stores the result and reports completion to the sender.
// "fresh" drops every idle connection first, so each exchange pays its TLS
// handshakes; "reuse" keeps connections open between exchanges.
func BenchmarkNotifiedPull(b *testing.B) {
	for _, mode := range []string{"fresh", "reuse"} {
		b.Run(mode, func(b *testing.B) {
			nw := startNetwork(b, 1)
			ctx := context.Background()
			gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: &http.Client{Timeout: 30 * time.Second}}
			req := notifiedpull.ReferRequest{PatientBSN: nw.Patients[0].BSN, ReceiverURA: Hospital.URA, Application: "bgz"}
			run := func() (notify, pull time.Duration) {
				if mode == "fresh" {
					for _, n := range nw.Nodes {
						n.CloseIdleConnections()
					}
				}
				start := time.Now()
				if err := gp.do(ctx, http.MethodPost, "/internal/referrals", req, nil); err != nil {
					b.Fatal(err)
				}
				notified := time.Now()
				select {
				case e := <-nw.done:
					if e.Step != "completed" {
						b.Fatalf("exchange %s: %v", e.Step, e.Err)
					}
				case <-time.After(30 * time.Second):
					b.Fatal("exchange did not complete")
				}
				return notified.Sub(start), time.Since(notified)
			}
			run() // warm caches: addressbook answers, client key sets
			auditStats := func() (records, batches int64) {
				for _, n := range nw.Nodes {
					st := n.Audit().Stats()
					records, batches = records+st.Records, batches+st.Batches
				}
				return records, batches
			}
			records0, batches0 := auditStats()
			b.ResetTimer()
			var notify, pull time.Duration
			for i := 0; i < b.N; i++ {
				n, p := run()
				notify += n
				pull += p
			}
			b.ReportMetric(float64(notify.Microseconds())/float64(b.N)/1000, "notify-ms/op")
			b.ReportMetric(float64(pull.Microseconds())/float64(b.N)/1000, "pull-ms/op")
			// Durable audit commits (one fsync each) per exchange, both nodes:
			// how well the group commit batches the parallel queries.
			records, batches := auditStats()
			b.ReportMetric(float64(records-records0)/float64(b.N), "audit-records/op")
			b.ReportMetric(float64(batches-batches0)/float64(b.N), "audit-commits/op")
		})
	}
}
