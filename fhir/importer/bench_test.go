package importer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/schakel-nl/schakel/demo"
	"github.com/schakel-nl/schakel/fhir"
	"github.com/schakel-nl/schakel/fhir/importer"
	"github.com/schakel-nl/schakel/fhir/store"
	"github.com/schakel-nl/schakel/fhir/store/postgres"
	"github.com/schakel-nl/schakel/fhir/store/sqlite"
	"github.com/schakel-nl/schakel/fhir/store/storetest"
	"github.com/schakel-nl/schakel/internal/benchfloor"
)

// BenchmarkImportDemo bulk-imports the BgZ of 1 000 demo patients (one
// transaction Bundle each; $SCHAKEL_BENCH_PATIENTS patients when set, e.g.
// 10000) into a fresh store per iteration, and then re-imports them into the
// loaded store (every resource unchanged), next to the machine's floors of
// the same run.
func BenchmarkImportDemo(b *testing.B) {
	if testing.Short() {
		b.Skip("generates and imports 1 000 patients")
	}
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("SCHAKEL_BENCH_PATIENTS")); err == nil && v > 0 {
		n = v
	}
	bundles := make([][]byte, n)
	resources := 0
	for i := range n {
		p, err := storetest.BenchData(i)
		if err != nil {
			b.Fatal(err)
		}
		bundles[i] = demo.TransactionBundle(demo.Patient{BSN: p.BSN, Resources: p.Resources})
		resources += len(p.Resources)
	}
	benchfloor.Run(b, "")
	backends := map[string]func(b *testing.B) store.Store{
		"sqlite": func(b *testing.B) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "fhir.db"), fhir.STU3)
			if err != nil {
				b.Fatal(err)
			}
			return st
		},
	}
	if dsn := os.Getenv("SCHAKEL_TEST_POSTGRES"); dsn != "" {
		backends["postgres"] = func(b *testing.B) store.Store { return openPostgres(b, dsn) }
	}
	importAll := func(b *testing.B, st store.Store) importer.Counts {
		im := newImporter(b, st)
		sum := &importer.Summary{}
		bk, err := im.NewBulk(sum, importer.BulkOptions{Strict: true})
		if err != nil {
			b.Fatal(err)
		}
		for i, bundle := range bundles {
			if err := bk.Add(context.Background(), fmt.Sprintf("bundle-%d", i), bundle); err != nil {
				b.Fatal(err)
			}
		}
		if err := bk.Finish(context.Background()); err != nil {
			b.Fatal(err)
		}
		return sum.Total()
	}
	for name, open := range backends {
		b.Run(fmt.Sprintf("%s/%d/fresh", name, n), func(b *testing.B) {
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				st := open(b)
				b.StartTimer()
				c0 := cpuTime()
				// Shared organisations and practitioners recur across
				// patients: created once, unchanged after.
				if c := importAll(b, st); c.Sum() != resources || c.Created == 0 || c.Updated != 0 {
					b.Fatalf("counts %+v for %d resources", c, resources)
				}
				cpu += cpuTime() - c0
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
			reportRates(b, resources, cpu)
		})
		b.Run(fmt.Sprintf("%s/%d/unchanged", name, n), func(b *testing.B) {
			st := open(b)
			defer st.Close()
			importAll(b, st)
			var cpu time.Duration
			for b.Loop() {
				c0 := cpuTime()
				if c := importAll(b, st); c.Unchanged != resources {
					b.Fatalf("unchanged %d of %d", c.Unchanged, resources)
				}
				cpu += cpuTime() - c0
			}
			reportRates(b, resources, cpu)
		})
	}
}

// reportRates reports resources per second of wall time and per second of
// this process's CPU time (user + system): on a shared machine the wall
// rate depends on what else runs, the CPU rate far less (on PostgreSQL it
// leaves out the server's CPU).
func reportRates(b *testing.B, resources int, cpu time.Duration) {
	b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
	if cpu > 0 {
		b.ReportMetric(float64(resources)*float64(b.N)/cpu.Seconds(), "resources/cpu-s")
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openPostgres opens a store in a fresh schema, dropped when tb ends.
func openPostgres(tb testing.TB, dsn string) store.Store {
	tb.Helper()
	ctx := context.Background()
	var r [6]byte
	rand.Read(r[:])
	schema := "importtest_" + hex.EncodeToString(r[:])
	st, err := postgres.Open(ctx, dsn, fhir.STU3, postgres.WithSchema(schema))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		st.Close()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Error(err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Error(err)
		}
	})
	return st
}
