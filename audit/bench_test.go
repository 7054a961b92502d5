package audit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/schakel-nl/schakel/internal/benchfloor"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// BenchmarkAppendDurable measures Append with a durable commit under 8
// concurrent writers on GOMAXPROCS 2 (SetParallelism 4), and reports how
// many records each durable write (one fdatasync of the journal, or one
// synchronous commit) carried. Sub-benchmarks: the journal with the SQLite
// index behind it (the default), SQLite committing every batch itself
// (NoJournal), and PostgreSQL when SCHAKEL_TEST_POSTGRES is set.
func BenchmarkAppendDurable(b *testing.B) {
	kinds := []struct {
		name string
		cfg  func(b *testing.B) Config
	}{
		{"sqlite-journal", func(b *testing.B) Config { return Config{Path: filepath.Join(b.TempDir(), "audit.db")} }},
		{"sqlite-direct", func(b *testing.B) Config {
			return Config{Path: filepath.Join(b.TempDir(), "audit.db"), NoJournal: true}
		}},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		kinds = append(kinds, struct {
			name string
			cfg  func(b *testing.B) Config
		}{"postgres", func(b *testing.B) Config {
			schema := fmt.Sprintf("audit_bench_%d", time.Now().UnixNano())
			b.Cleanup(func() {
				if c, err := pgx.Connect(context.Background(), dsn); err == nil {
					_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
					c.Close(context.Background())
				}
			})
			return Config{Postgres: dsn, Schema: schema}
		}})
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			s := newBenchStore(b, k.cfg(b))
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
			// The index must keep up, not only the journal: time the
			// rest of the indexing, which Close waits for.
			start := time.Now()
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms-to-drain")
		})
	}
}

// BenchmarkAppendOne measures Append by one writer, one record at a time:
// every record waits for a durable write of its own (the journal's
// fdatasync), as a participant's system reading one resource at a time
// does. The floor beside it is a 4 KiB append and fdatasync of a file that
// grows; the journal writes into a segment already zero-filled ahead
// (journalChunk), so its fdatasync writes the data alone, not a new size.
func BenchmarkAppendOne(b *testing.B) {
	dir := b.TempDir()
	benchfloor.Run(b, dir)
	b.Run("append", func(b *testing.B) {
		s := newBenchStore(b, Config{Path: filepath.Join(dir, "audit.db")})
		ctx := context.Background()
		rec := record(0)
		for b.Loop() {
			if err := s.Append(ctx, rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func newBenchStore(b *testing.B, cfg Config) *Store {
	key, err := ephemeralKey()
	if err != nil {
		b.Fatal(err)
	}
	cfg.Node, cfg.Key, cfg.Logger = "bench", key, slog.New(slog.DiscardHandler)
	s, err := OpenWith(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkAppendReplicas is BenchmarkAppendDurable's PostgreSQL case with
// the 8 writers split over two Stores on one schema, as two replicas of a
// node: their batches take turns under the log's advisory lock.
func BenchmarkAppendReplicas(b *testing.B) {
	dsn := os.Getenv("SCHAKEL_TEST_POSTGRES")
	if dsn == "" {
		b.Skip("SCHAKEL_TEST_POSTGRES not set")
	}
	schema := fmt.Sprintf("audit_bench_%d", time.Now().UnixNano())
	b.Cleanup(func() {
		if c, err := pgx.Connect(context.Background(), dsn); err == nil {
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
			c.Close(context.Background())
		}
	})
	key, err := ephemeralKey()
	if err != nil {
		b.Fatal(err)
	}
	var stores [2]*Store
	for i := range stores {
		stores[i], err = OpenWith(context.Background(), Config{Postgres: dsn, Schema: schema, Node: "bench", Key: key,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { stores[i].Close() })
	}
	ctx := context.Background()
	rec := record(0)
	var next atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		s := stores[next.Add(1)%2]
		for pb.Next() {
			if err := s.Append(ctx, rec); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	var records, batches int64
	for _, s := range stores {
		st := s.Stats()
		records, batches = records+st.Records, batches+st.Batches
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(records)/float64(max(batches, 1)), "records/batch")
}

// BenchmarkEncodeRecord is what every record costs before it is written:
// its canonical body, its searchable columns and its chain hash.
func BenchmarkEncodeRecord(b *testing.B) {
	rec := record(1)
	rec.EventID, rec.Time, rec.Node = newID(), time.Now(), "bench"
	rec.Resources = []string{"Condition/1", "Condition/2", "Condition/3"}
	rec.Checks = []string{
		"mtls: TLS 1.3 client certificate verified against the trust list",
		"token: access token signature, issuer, audience and expiry (RFC 9068)",
		"token-binding: cnf x5t#S256 matches the client certificate (RFC 8705)",
		`plateau: agreement "default agreement", authentication 1, authorization 1, consent 1`,
		"policy: care application bgz allows this interaction for the requester's role",
		"referral: query listed in the workflow Task, patient of the referral, referral active",
	}
	var head [32]byte
	b.ReportAllocs()
	for b.Loop() {
		body, err := encodeBody(rec)
		if err != nil {
			b.Fatal(err)
		}
		_ = columnsOf(rec)
		head = chainHash(head, body)
	}
}

// BenchmarkIndexTx measures the indexer's transaction behind the journal:
// 64 records into an index already holding 30 000, with the event ids the
// store makes (UUIDv7, time-ordered) and, for comparison, random (v4) ids,
// which land on a random page of the event_id index each.
func BenchmarkIndexTx(b *testing.B) {
	for name, id := range map[string]func() string{"event-ids": newID, "random-ids": uuid.NewString} {
		b.Run(name, func(b *testing.B) {
			j, err := openJournaled(context.Background(), filepath.Join(b.TempDir(), "audit.db"), slog.New(slog.DiscardHandler))
			if err != nil {
				b.Fatal(err)
			}
			defer j.close()
			var head [32]byte
			var seq int64
			batch := func() []row {
				rows := make([]row, 64)
				for i := range rows {
					rec := record(int(seq))
					rec.EventID, rec.Time, rec.Node = id(), time.Now(), "bench"
					body, err := encodeBody(rec)
					if err != nil {
						b.Fatal(err)
					}
					seq++
					prev := head
					head = chainHash(prev, body)
					rows[i] = row{seq: seq, prev: prev[:], hash: bytes32(head), body: body, cols: columnsOf(rec)}
				}
				return rows
			}
			for seq < 30000 {
				if err := j.indexTx(context.Background(), batch(), nil, false); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				rows := batch()
				b.StartTimer()
				if err := j.indexTx(context.Background(), rows, nil, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
