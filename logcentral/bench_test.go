package logcentral

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// BenchmarkStoreAppend stores batches of 100 records of ~1.5 kB each (the
// size of a data request's record with its checks) in the SQLite central
// log, as a receiver does after checking a node's batch. One op is one
// record; the cost must not grow with the records already stored.
func BenchmarkStoreAppend(b *testing.B) {
	st, err := openSQLite(context.Background(), filepath.Join(b.TempDir(), "central.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	body := `{"checks":"` + strings.Repeat("x", 1500) + `"}`
	link := strings.Repeat("ab", 32)
	batch := make([]audit.Entry, 100)
	at := time.Now()
	seq := int64(0)
	for b.Loop() {
		for i := range batch {
			seq++
			batch[i] = audit.Entry{Seq: seq, Prev: link, Hash: link, Body: body}
		}
		if err := st.Append(context.Background(), "00000001", batch, at); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(seq), "µs/record")
}
