package logcentral

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/schakel-nl/schakel/audit"
	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkShip measures shipping throughput end to end: a node's log of
// b.N records read, POSTed over mTLS on 127.0.0.1 in batches of 500,
// checked against the chain and stored durably (SQLite, one fsynced commit
// per batch) by the receiver. The fsync floor is measured in the same run:
//
//	GOMAXPROCS=2 go test ./logcentral -run '^$' -bench 'Ship' -benchmem
func BenchmarkShip(b *testing.B) {
	b.Run("records", func(b *testing.B) {
		p := newTestPKI(b)
		central, err := Open(context.Background(), b.TempDir()+"/central.db", "", "")
		if err != nil {
			b.Fatal(err)
		}
		defer central.Close()
		recv := startReceiver(b, p, central)
		dir := b.TempDir()
		log := nodeLog(b, dir)
		appendN(b, log, 0, b.N)
		sh, err := audit.NewShipper(audit.ShipperConfig{Store: log, URL: recv.url(), HTTP: p.client(p.nodeA),
			CursorFile: filepath.Join(dir, "ship.cursor"), Batch: 500})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for sh.Acknowledged() < int64(b.N) {
			if _, err := sh.ShipOnce(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	benchfloor.Run(b, "")
}
