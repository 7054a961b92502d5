package network

import (
	"context"
	"testing"

	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkTransfer measures one complete eOverdracht transfer between the
// hospital's and the nursing home's nodes on loopback, as `schakel network
// up --once --care eoverdracht` runs it: the hospital's system refers (the
// dossier's import is a no-op after the first), the node notifies, the
// nursing home's node gets a token, reads the workflow Task, pulls the
// aanmeldbericht's $document, sets the Task accepted and in-progress,
// pulls the overdrachtbericht's $document, stores both and sets the Task
// completed; ns/op runs until the hospital's system reads completed.
func BenchmarkNursingTransfer(b *testing.B) {
	nw := startTransferNetwork(b)
	benchfloor.Run(b, nw.opts.DataDir)
	ctx := context.Background()
	if _, err := nw.ExchangeNursingTransfer(ctx); err != nil { // warm: dossier, connections
		b.Fatal(err)
	}
	b.Run("exchange", func(b *testing.B) {
		r0, c0 := auditStats(nw)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := nw.ExchangeNursingTransfer(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		reportAudit(b, nw, r0, c0)
	})
}
