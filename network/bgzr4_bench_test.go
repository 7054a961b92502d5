package network

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/bgz"
	"github.com/schakel-nl/schakel/bgzr4"
	"github.com/schakel-nl/schakel/consult"
	"github.com/schakel-nl/schakel/internal/benchfloor"
	"github.com/schakel-nl/schakel/node"
	"github.com/schakel-nl/schakel/notifiedpull"
)

// BenchmarkBgZVersions measures one BgZ exchange end to end per FHIR
// version on the same network and data (the demo patient in STU3 and in
// R4): a Notified Pull from the GP practice's referral until the hospital
// has stored the 26 blocks and the GP's node has taken the completion, and
// a Direct Pull (POST /internal/consult on the hospital's node). Idle
// connections are reused, as between two nodes that exchange often.
func BenchmarkBgZVersions(b *testing.B) {
	nw := startNetwork(b, 1)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	hc := &http.Client{Timeout: 30 * time.Second}
	gp := &xis{base: nw.GPNode.InternalURL(), token: nw.Token(GP.URA), http: hc}
	hosp := &xis{base: nw.HospNode.InternalURL(), token: nw.Token(Hospital.URA), http: hc}
	for _, app := range []string{bgz.Name, bgzr4.Name} {
		b.Run("notified-pull/"+app, func(b *testing.B) {
			req := notifiedpull.ReferRequest{PatientBSN: nw.Patients[0].BSN, ReceiverURA: Hospital.URA, Application: app}
			run := func() {
				var ref node.Referral
				if err := gp.do(ctx, http.MethodPost, "/internal/referrals", req, &ref); err != nil {
					b.Fatal(err)
				}
				for completed, reported := false, false; !completed || !reported; {
					select {
					case e := <-nw.done:
						switch e.Step {
						case "failed":
							b.Fatalf("exchange failed: %v", e.Err)
						case "completed":
							completed = true
						default:
							reported = true
						}
					case <-time.After(30 * time.Second):
						b.Fatal("exchange did not complete")
					}
				}
			}
			run() // warm caches: addressbook answers, client key sets
			records0, batches0 := auditStats(nw)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			reportAudit(b, nw, records0, batches0)
		})
		b.Run("direct-pull/"+app, func(b *testing.B) {
			req := consult.Request{PatientBSN: nw.Patients[0].BSN, HolderURA: GP.URA, Application: app, UserID: "900012345", UserRole: "01.016"}
			run := func() {
				var res consult.Result
				if err := hosp.do(ctx, http.MethodPost, "/internal/consult", req, &res); err != nil {
					b.Fatal(err)
				}
				if !res.Complete || res.Resources == 0 {
					b.Fatalf("incomplete consult: %d resources", res.Resources)
				}
			}
			run()
			records0, batches0 := auditStats(nw)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				run()
			}
			reportAudit(b, nw, records0, batches0)
		})
	}
}
