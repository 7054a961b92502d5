package importer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	"github.com/schakel-nl/schakel/internal/procstat"
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
	// $SCHAKEL_BENCH_BATCH sets the resources per batch (default
	// importer.DefaultBatchResources).
	batch, _ := strconv.Atoi(os.Getenv("SCHAKEL_BENCH_BATCH"))
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
		bk, err := im.NewBulk(sum, importer.BulkOptions{Strict: true, BatchResources: batch})
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
			var cpu, server time.Duration
			for b.Loop() {
				b.StopTimer()
				st := open(b)
				pg, _ := st.(*pgStore)
				var s0 map[int]time.Duration
				if pg != nil {
					s0 = pg.serverCPU()
				}
				b.StartTimer()
				c0 := cpuTime()
				// Shared organisations and practitioners recur across
				// patients: created once, unchanged after.
				if c := importAll(b, st); c.Sum() != resources || c.Created == 0 || c.Updated != 0 {
					b.Fatalf("counts %+v for %d resources", c, resources)
				}
				cpu += cpuTime() - c0
				if pg != nil {
					server += pg.serverCPUSince(s0)
				}
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
			reportRates(b, resources, cpu, server)
		})
		b.Run(fmt.Sprintf("%s/%d/unchanged", name, n), func(b *testing.B) {
			st := open(b)
			defer st.Close()
			importAll(b, st)
			pg, _ := st.(*pgStore)
			var s0 map[int]time.Duration
			if pg != nil {
				s0 = pg.serverCPU()
			}
			var cpu, server time.Duration
			for b.Loop() {
				c0 := cpuTime()
				if c := importAll(b, st); c.Unchanged != resources {
					b.Fatalf("unchanged %d of %d", c.Unchanged, resources)
				}
				cpu += cpuTime() - c0
			}
			if pg != nil {
				server = pg.serverCPUSince(s0)
			}
			reportRates(b, resources, cpu, server)
		})
	}
}

// reportRates reports resources per second of wall time and per second of
// CPU time (user + system) of this process and, on PostgreSQL, of the
// server processes that served it: on a shared machine the wall rate
// depends on what else runs, the CPU rate far less.
func reportRates(b *testing.B, resources int, cpu, server time.Duration) {
	n := float64(resources) * float64(b.N)
	b.ReportMetric(n/b.Elapsed().Seconds(), "resources/s")
	if cpu > 0 {
		b.ReportMetric(n/cpu.Seconds(), "resources/cpu-s")
	}
	if server > 0 {
		b.ReportMetric(n/(cpu+server).Seconds(), "resources/cpu-s-with-server")
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

// pgStore is a PostgreSQL store of a benchmark; its connections carry the
// application name app, so the server processes serving it can be found.
type pgStore struct {
	*postgres.Store
	dsn, app string
}

// openPostgres opens a store in a fresh schema, dropped when tb ends.
func openPostgres(tb testing.TB, dsn string) *pgStore {
	tb.Helper()
	ctx := context.Background()
	var r [6]byte
	rand.Read(r[:])
	schema := "importtest_" + hex.EncodeToString(r[:])
	st, err := postgres.Open(ctx, withAppName(dsn, schema), fhir.STU3, postgres.WithSchema(schema))
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
	return &pgStore{Store: st, dsn: dsn, app: schema}
}

func withAppName(dsn, app string) string {
	switch {
	case !strings.Contains(dsn, "://"):
		return dsn + " application_name=" + app
	case strings.Contains(dsn, "?"):
		return dsn + "&application_name=" + app
	}
	return dsn + "?application_name=" + app
}

// serverCPU returns the CPU time, by process, of the server processes
// serving s (from /proc; the server runs on this machine in the
// benchmarks), or nil when it cannot tell.
func (s *pgStore) serverCPU() map[int]time.Duration {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return nil
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, s.app)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		cpu, err := procstat.CPU(int(pid))
		if err != nil {
			return nil
		}
		out[int(pid)] = cpu
	}
	return out
}

// serverCPUSince is the server CPU time of s used since before.
func (s *pgStore) serverCPUSince(before map[int]time.Duration) time.Duration {
	var d time.Duration
	for pid, t := range s.serverCPU() {
		d += t - before[pid]
	}
	return d
}
